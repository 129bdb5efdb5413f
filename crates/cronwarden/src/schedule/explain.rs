//! Plain-English descriptions of schedules.

use jiff::Timestamp;

use super::Schedule;

/// What a schedule means, in words, and how it behaves on the zone's next DST changes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Explanation {
    /// One sentence: "At 02:30 every day, Europe/Berlin".
    pub summary: String,
    /// One line per upcoming DST change of the zone, saying what the schedule does then.
    pub dst_notes: Vec<String>,
}

pub(crate) fn explain(schedule: &Schedule, _now: Timestamp) -> Explanation {
    Explanation { summary: schedule.expression().to_owned(), dst_notes: Vec::new() }
}
