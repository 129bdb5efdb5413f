//! Any input either parses or gives an error, never a panic; whatever parses computes fires
//! that lie strictly after (or before) the instant asked about, in order.
#![no_main]

use cronwarden::schedule::{DstPolicy, FoldPolicy, GapPolicy, ScheduleOptions};
use jiff::{tz::TimeZone, Timestamp};
use libfuzzer_sys::fuzz_target;

const ZONES: [&str; 4] = ["UTC", "Europe/Berlin", "Australia/Lord_Howe", "America/Santiago"];

fuzz_target!(|data: &[u8]| {
    let Some((&selector, rest)) = data.split_first() else { return };
    let Ok(expression) = std::str::from_utf8(rest) else { return };
    let tz = TimeZone::get(ZONES[usize::from(selector & 3)]).unwrap();
    let policy = DstPolicy {
        gap: [GapPolicy::Cron, GapPolicy::RunAfterGap, GapPolicy::Skip][usize::from(selector >> 2 & 1)],
        fold: [FoldPolicy::Cron, FoldPolicy::First, FoldPolicy::Second, FoldPolicy::Both]
            [usize::from(selector >> 4 & 3)],
    };
    let options = ScheduleOptions::new().time_zone(tz).dst_policy(policy).hash_key("fuzz");
    let Ok(schedule) = options.parse(expression) else { return };
    let _ = schedule.explain(Timestamp::UNIX_EPOCH);
    let start = Timestamp::from_second(1_774_000_000 + i64::from(selector) * 7_919).unwrap();
    let mut last = start;
    for fire in schedule.fires_after(start).take(8) {
        assert!(fire > last, "{expression:?}: {fire} is not after {last}");
        assert_eq!(schedule.prev_before(fire).map_or(true, |p| p <= last), true);
        last = fire;
    }
    if let Some(prev) = schedule.prev_before(start) {
        assert!(prev < start);
        // No fire lies between `prev` and `start`. (A schedule can stop firing for good: a
        // wildcard job whose only times fall in a DST gap every year.)
        match schedule.next_after(prev) {
            Some(next) => assert!(next >= start, "{expression:?}: a fire between {prev} and {start} was skipped"),
            None => assert_eq!(schedule.next_after(start), None),
        }
    }
});
