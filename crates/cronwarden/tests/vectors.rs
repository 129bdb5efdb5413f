//! Every case of the shared cron test vectors (`tests/data/cron-vectors.jsonl`, described in
//! `tests/data/cron-vectors.md`) through the library: the next five fires after `after`, in the
//! vector's zone, with the zone's offset at each fire.

use cronwarden::schedule::ScheduleOptions;
use jiff::{tz::TimeZone, Timestamp};
use serde::Deserialize;

#[derive(Deserialize)]
struct Vector {
    expr: String,
    tz: String,
    after: String,
    next: Vec<String>,
    dst_adjacent: bool,
}

fn vectors() -> Vec<Vector> {
    include_str!("data/cron-vectors.jsonl")
        .lines()
        .map(|line| serde_json::from_str(line).expect("a vector parses"))
        .collect()
}

#[test]
fn every_vector_matches() {
    let vectors = vectors();
    assert_eq!(vectors.len(), 2464, "the vector file is complete");
    let mut failures = Vec::new();
    let (mut dst, mut ordinary) = (0, 0);
    for v in &vectors {
        let tz = TimeZone::get(&v.tz).unwrap();
        let schedule = ScheduleOptions::new()
            .time_zone(tz.clone())
            .parse(&v.expr)
            .unwrap_or_else(|e| panic!("{} does not parse: {e}", v.expr));
        let after: Timestamp = v.after.parse().unwrap();
        let got: Vec<String> = schedule
            .fires_after(after)
            .take(v.next.len())
            .map(|t| {
                t.to_zoned(tz.clone())
                    .strftime("%Y-%m-%dT%H:%M:%S%:z")
                    .to_string()
            })
            .collect();
        if got != v.next {
            failures.push(format!(
                "{:?} in {} after {}:\n  expected {:?}\n  got      {:?}",
                v.expr, v.tz, v.after, v.next, got
            ));
        }
        if v.dst_adjacent {
            dst += 1;
        } else {
            ordinary += 1;
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} vectors ({dst} DST-adjacent, {ordinary} ordinary) failed; first ones:\n{}",
        failures.len(),
        vectors.len(),
        failures
            .iter()
            .take(15)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    );
}
