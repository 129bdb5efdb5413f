//! Plain-English descriptions of schedules and of their behaviour on DST days.

use cronwarden::schedule::{DstPolicy, FoldPolicy, GapPolicy, ScheduleOptions};
use jiff::{tz::TimeZone, Timestamp};

fn explain(expr: &str, zone: &str, policy: DstPolicy) -> (String, Vec<String>) {
    let schedule = ScheduleOptions::new()
        .time_zone(TimeZone::get(zone).unwrap())
        .dst_policy(policy)
        .parse(expr)
        .unwrap();
    let e = schedule.explain("2027-01-01T00:00:00Z".parse::<Timestamp>().unwrap());
    (e.summary, e.dst_notes)
}

fn summary(expr: &str) -> String {
    explain(expr, "UTC", DstPolicy::default()).0
}

#[test]
fn summaries_read_as_english() {
    assert_eq!(summary("30 2 * * *"), "At 02:30 every day, UTC");
    assert_eq!(summary("*/5 * * * *"), "Every 5 minutes, UTC");
    assert_eq!(summary("0 * * * *"), "At minute 0 of every hour, UTC");
    assert_eq!(
        summary("0 9 * * MON-FRI"),
        "At 09:00 on Monday through Friday, UTC"
    );
    assert_eq!(
        summary("0 0 1,15 * MON"),
        "At 00:00 on days 1 and 15 of the month, or on Monday, UTC"
    );
    assert_eq!(
        summary("0 0 L * *"),
        "At 00:00 on the last day of the month, UTC"
    );
    assert_eq!(
        summary("0 0 LW * *"),
        "At 00:00 on the last weekday of the month, UTC"
    );
    assert_eq!(
        summary("0 0 15W * *"),
        "At 00:00 on the weekday nearest day 15 of the month, UTC"
    );
    assert_eq!(
        summary("0 0 * * FRI#3"),
        "At 00:00 on the third Friday of the month, UTC"
    );
    assert_eq!(
        summary("0 0 * * 5L"),
        "At 00:00 on the last Friday of the month, UTC"
    );
    assert_eq!(
        summary("0 9 * jan,jul *"),
        "At 09:00 in January and July, UTC"
    );
    assert_eq!(
        summary("0 30 9 * * 1-5"),
        "At 09:30 on Monday through Friday, UTC"
    );
    assert_eq!(summary("15 30 9 * * *"), "At 09:30:15 every day, UTC");
    assert_eq!(
        summary("*/15 9-17 * * *"),
        "Every 15 minutes, between 09:00 and 17:59 every day, UTC"
    );
    assert_eq!(summary("@every 90s"), "Every 1 minute 30 seconds");
    assert_eq!(summary("* * * * * *"), "Every second, UTC");
    assert_eq!(
        summary("*/10 * * * * *"),
        "Every 10 seconds, every minute, UTC"
    );
    assert_eq!(summary("@every 1h"), "Every hour");
}

#[test]
fn dst_notes_follow_the_policy() {
    let berlin = "Europe/Berlin";
    let (_, notes) = explain("30 2 * * *", berlin, DstPolicy::default());
    assert_eq!(notes.len(), 2);
    assert!(notes[0].starts_with("2027-03-28: clocks jump from 02:00 to 03:00"));
    assert!(
        notes[0].ends_with("the 02:30 run happens once, at 03:00"),
        "{}",
        notes[0]
    );
    assert!(
        notes[1].ends_with("the 02:30 run happens in the first pass only"),
        "{}",
        notes[1]
    );

    let skip = DstPolicy {
        gap: GapPolicy::Skip,
        fold: FoldPolicy::Both,
    };
    let (_, notes) = explain("30 2 * * *", berlin, skip);
    assert!(
        notes[0].ends_with("the 02:30 run is skipped that day"),
        "{}",
        notes[0]
    );
    assert!(
        notes[1].ends_with("the 02:30 run happens in both passes"),
        "{}",
        notes[1]
    );

    let (_, notes) = explain("*/30 * * * *", berlin, DstPolicy::default());
    assert!(
        notes[0].ends_with("the 02:00 and 02:30 runs are skipped that day"),
        "{}",
        notes[0]
    );
    assert!(
        notes[1].ends_with("the 02:00 and 02:30 runs happen in both passes"),
        "{}",
        notes[1]
    );

    let (_, notes) = explain("0 12 * * *", berlin, DstPolicy::default());
    assert!(
        notes[0].ends_with("no run falls in the skipped time"),
        "{}",
        notes[0]
    );

    // Lord Howe moves its clocks by 30 minutes.
    let (_, notes) = explain("15 2 * * *", "Australia/Lord_Howe", DstPolicy::default());
    assert!(
        notes.iter().any(
            |n| n.contains("from 02:00 to 02:30 (+10:30 to +11:00)") && n.ends_with("at 02:30")
        ),
        "{notes:?}"
    );

    let (_, notes) = explain("30 2 * * *", "Asia/Kolkata", DstPolicy::default());
    assert_eq!(
        notes,
        ["Asia/Kolkata has no clock changes in the next two years."]
    );
}

#[test]
fn a_zone_without_changes_in_the_horizon_is_said_so_promptly() {
    // Berlin had no DST from 1950 to 1979: the next changes lie beyond the two-year horizon.
    let schedule = ScheduleOptions::new()
        .time_zone(TimeZone::get("Europe/Berlin").unwrap())
        .parse("*/5 * * * *")
        .unwrap();
    let e = schedule.explain(Timestamp::UNIX_EPOCH);
    assert_eq!(
        e.dst_notes,
        ["Europe/Berlin has no clock changes in the next two years."]
    );
}
