//! Every syntax form the parser accepts, its edge cases, and the errors it gives.

use cronwarden::schedule::{DstPolicy, Field, FoldPolicy, GapPolicy, Schedule, ScheduleOptions};
use jiff::{tz::TimeZone, Timestamp};

fn ts(s: &str) -> Timestamp {
    s.parse().unwrap()
}

/// The first `n` fires after `after` of `expr` in `zone`, as local RFC 3339 strings.
fn fires_in_zone(
    options: ScheduleOptions,
    zone: &str,
    expr: &str,
    after: &str,
    n: usize,
) -> Vec<String> {
    let tz = TimeZone::get(zone).unwrap();
    let schedule = options
        .time_zone(tz.clone())
        .parse(expr)
        .unwrap_or_else(|e| panic!("{expr}: {e}"));
    schedule
        .fires_after(ts(after))
        .take(n)
        .map(|t| {
            t.to_zoned(tz.clone())
                .strftime("%Y-%m-%dT%H:%M:%S%:z")
                .to_string()
        })
        .collect()
}

fn fires(expr: &str, after: &str, n: usize) -> Vec<String> {
    fires_in_zone(ScheduleOptions::new(), "UTC", expr, after, n)
}

/// The days (`MM-DD`) in 2026 on which a once-a-day `expr` fires.
fn days_2026(expr: &str) -> Vec<String> {
    let schedule = Schedule::parse(expr).unwrap();
    schedule
        .fires_in(ts("2026-01-01T00:00:00Z")..ts("2027-01-01T00:00:00Z"))
        .map(|t| t.strftime("%m-%d").to_string())
        .collect()
}

fn err(expr: &str) -> cronwarden::schedule::ParseError {
    Schedule::parse(expr).expect_err(expr)
}

#[test]
fn five_and_six_fields() {
    assert_eq!(
        fires("30 2 * * *", "2026-11-22T12:00:00Z", 2),
        ["2026-11-23T02:30:00+00:00", "2026-11-24T02:30:00+00:00"]
    );
    assert_eq!(
        fires("15,45 30 2 * * *", "2026-11-22T12:00:00Z", 3),
        [
            "2026-11-23T02:30:15+00:00",
            "2026-11-23T02:30:45+00:00",
            "2026-11-24T02:30:15+00:00"
        ]
    );
    assert_eq!(
        fires("*/20 * * * * *", "2026-11-22T12:00:05Z", 3),
        [
            "2026-11-22T12:00:20+00:00",
            "2026-11-22T12:00:40+00:00",
            "2026-11-22T12:01:00+00:00"
        ]
    );
}

#[test]
fn lists_ranges_and_steps() {
    assert_eq!(
        fires("0 9-17/4 * * *", "2026-11-22T00:00:00Z", 4),
        [
            "2026-11-22T09:00:00+00:00",
            "2026-11-22T13:00:00+00:00",
            "2026-11-22T17:00:00+00:00",
            "2026-11-23T09:00:00+00:00"
        ]
    );
    // `N/s` means `N-max/s`: minutes 50 and 55 only, then the next hour starts again at 50.
    assert_eq!(
        fires("50/5 * * * *", "2026-11-22T00:00:00Z", 3),
        [
            "2026-11-22T00:50:00+00:00",
            "2026-11-22T00:55:00+00:00",
            "2026-11-22T01:50:00+00:00"
        ]
    );
    // `*/s` restarts every hour, as in cron: `*/25` is :00, :25, :50.
    assert_eq!(
        fires("*/25 * * * *", "2026-11-22T00:00:00Z", 4),
        [
            "2026-11-22T00:25:00+00:00",
            "2026-11-22T00:50:00+00:00",
            "2026-11-22T01:00:00+00:00",
            "2026-11-22T01:25:00+00:00"
        ]
    );
    assert_eq!(
        fires("0 0 1,15,28-30/2 * *", "2026-11-02T00:00:00Z", 3).len(),
        3
    );
    assert_eq!(
        days_2026("0 0 1,15,28-30/2 2 *"),
        ["02-01", "02-15", "02-28"]
    );
}

#[test]
fn names_in_any_case_and_sunday_as_0_or_7() {
    let a = days_2026("0 0 * jan-Feb sun");
    assert_eq!(a, days_2026("0 0 * 1-2 0"));
    assert_eq!(a, days_2026("0 0 * JAN,FEB 7"));
    assert_eq!(a.first().unwrap(), "01-04"); // the first Sunday of 2026
    assert_eq!(days_2026("0 0 * * MON-FRI").len(), 261);
    assert_eq!(days_2026("0 0 * * 1-5"), days_2026("0 0 * * mon-fri"));
    // 5-7 is Friday, Saturday and Sunday.
    assert_eq!(days_2026("0 0 * * 5-7"), days_2026("0 0 * * FRI,SAT,SUN"));
    // Question marks stand for `*` in the day fields.
    assert_eq!(days_2026("0 0 ? * MON"), days_2026("0 0 * * MON"));
}

#[test]
fn day_of_month_or_day_of_week_unless_one_starts_with_a_star() {
    // Neither starts with `*`: the 13th OR a Friday.
    let or = days_2026("0 0 13 * FRI");
    assert!(or.contains(&"01-13".to_owned()) && or.contains(&"01-02".to_owned()));
    assert_eq!(or.len(), 52 + 12 - 3); // 52 Fridays, 12 thirteenths, 3 of which are Fridays
                                       // `*/2` starts with `*`: odd days AND Mondays.
    let and = days_2026("0 0 */2 * MON");
    assert!(and.iter().all(|d| d[3..].parse::<u32>().unwrap() % 2 == 1));
    assert_eq!(and.first().unwrap(), "01-05");
}

#[test]
fn last_day_and_days_before_it() {
    assert_eq!(
        days_2026("0 0 L * *"),
        [
            "01-31", "02-28", "03-31", "04-30", "05-31", "06-30", "07-31", "08-31", "09-30",
            "10-31", "11-30", "12-31"
        ]
    );
    // February in a leap year.
    assert_eq!(
        fires("0 0 L 2 *", "2027-06-01T00:00:00Z", 2),
        ["2028-02-29T00:00:00+00:00", "2029-02-28T00:00:00+00:00"]
    );
    assert_eq!(
        fires("0 0 L-2 2 *", "2027-06-01T00:00:00Z", 1),
        ["2028-02-27T00:00:00+00:00"]
    );
    assert_eq!(
        days_2026("0 0 L-30 * *"),
        ["01-01", "03-01", "05-01", "07-01", "08-01", "10-01", "12-01"]
    );
}

#[test]
fn nearest_weekday_never_leaves_the_month() {
    // The 15th of Feb, Mar and Nov 2026 is a Sunday (so the 16th), of Aug a Saturday (the 14th).
    assert_eq!(
        days_2026("0 0 15W * *"),
        [
            "01-15", "02-16", "03-16", "04-15", "05-15", "06-15", "07-15", "08-14", "09-15",
            "10-15", "11-16", "12-15"
        ]
    );
    // 1 August 2026 is a Saturday: the nearest weekday in the month is Monday the 3rd.
    assert!(days_2026("0 0 1W * *").contains(&"08-03".to_owned()));
    // 31W does not fire in months without a 31st; 31 May 2026 is a Sunday: Friday the 29th.
    assert_eq!(
        days_2026("0 0 31W * *"),
        ["01-30", "03-31", "05-29", "07-31", "08-31", "10-30", "12-31"]
    );
    assert_eq!(
        days_2026("0 0 LW * *"),
        [
            "01-30", "02-27", "03-31", "04-30", "05-29", "06-30", "07-31", "08-31", "09-30",
            "10-30", "11-30", "12-31"
        ]
    );
}

#[test]
fn nth_and_last_weekday_of_the_month() {
    assert_eq!(
        fires("0 0 * * FRI#3", "2026-11-01T00:00:00Z", 2),
        ["2026-11-20T00:00:00+00:00", "2026-12-18T00:00:00+00:00"]
    );
    assert_eq!(
        days_2026("0 0 * * 5#5"),
        ["01-30", "05-29", "07-31", "10-30"]
    );
    assert_eq!(
        days_2026("0 0 * * 5L"),
        [
            "01-30", "02-27", "03-27", "04-24", "05-29", "06-26", "07-31", "08-28", "09-25",
            "10-30", "11-27", "12-25"
        ]
    );
    assert_eq!(days_2026("0 0 * * friL"), days_2026("0 0 * * 5L"));
    // With a day of month as well, the two are ORed like any other day fields.
    assert_eq!(days_2026("0 0 1 1 FRI#1"), ["01-01", "01-02"]);
}

#[test]
fn the_31st_and_the_29th_only_where_they_exist() {
    assert_eq!(
        days_2026("0 0 31 * *"),
        ["01-31", "03-31", "05-31", "07-31", "08-31", "10-31", "12-31"]
    );
    assert_eq!(
        fires("0 0 29 2 *", "2026-01-01T00:00:00Z", 3),
        [
            "2028-02-29T00:00:00+00:00",
            "2032-02-29T00:00:00+00:00",
            "2036-02-29T00:00:00+00:00"
        ]
    );
    // 2100 is not a leap year.
    assert_eq!(
        fires("0 0 29 2 *", "2096-03-01T00:00:00Z", 1),
        ["2104-02-29T00:00:00+00:00"]
    );
}

#[test]
fn aliases() {
    let after = "2026-11-22T10:20:00Z";
    for (alias, expr) in [
        ("@yearly", "0 0 1 1 *"),
        ("@annually", "0 0 1 1 *"),
        ("@monthly", "0 0 1 * *"),
        ("@weekly", "0 0 * * 0"),
        ("@daily", "0 0 * * *"),
        ("@midnight", "0 0 * * *"),
        ("@hourly", "0 * * * *"),
        ("@HOURLY", "0 * * * *"),
    ] {
        assert_eq!(fires(alias, after, 3), fires(expr, after, 3), "{alias}");
    }
    assert!(Schedule::parse("@hourly").unwrap().is_wildcard());
    assert!(!Schedule::parse("@daily").unwrap().is_wildcard());
}

#[test]
fn named_forms_that_applications_store() {
    let after = "2026-11-22T10:20:00Z";
    for (name, expr) in [
        ("every_minute", "* * * * *"),
        ("every_5_minutes", "*/5 * * * *"),
        ("every_15_minutes", "*/15 * * * *"),
        ("every_2_hours", "0 */2 * * *"),
        ("hourly", "0 * * * *"),
        ("daily", "0 0 * * *"),
        ("weekly", "0 0 * * 0"),
        ("monthly", "0 0 1 * *"),
        ("cron:0 2 * * *", "0 2 * * *"),
        ("CRON: */10 * * * *", "*/10 * * * *"),
    ] {
        assert_eq!(fires(name, after, 3), fires(expr, after, 3), "{name}");
    }
    let e = err("every_7_minutes");
    assert!(e.reason().contains("@every 7m"), "{e}");
}

#[test]
fn intervals_count_from_their_origin() {
    assert_eq!(
        fires("@every 90s", "2026-11-22T00:00:00Z", 3),
        [
            "2026-11-22T00:01:30+00:00",
            "2026-11-22T00:03:00+00:00",
            "2026-11-22T00:04:30+00:00"
        ]
    );
    let origin = ScheduleOptions::new().origin(ts("2026-11-22T00:00:07Z"));
    assert_eq!(
        fires_in_zone(
            origin.clone(),
            "UTC",
            "@every 1h30m",
            "2026-11-22T00:00:07Z",
            2
        ),
        ["2026-11-22T01:30:07+00:00", "2026-11-22T03:00:07+00:00"]
    );
    // Before the origin, the first fire is the origin itself; nothing fires earlier.
    let s = origin.parse("@every 5m").unwrap();
    assert_eq!(
        s.next_after(ts("2020-01-01T00:00:00Z")),
        Some(ts("2026-11-22T00:00:07Z"))
    );
    assert_eq!(s.prev_before(ts("2026-11-22T00:00:07Z")), None);
    assert_eq!(
        s.prev_before(ts("2026-11-22T00:05:08Z")),
        Some(ts("2026-11-22T00:05:07Z"))
    );
    assert_eq!(s.interval_seconds(), Some(300));
    // Intervals count real time: a DST change does not move them.
    let berlin = fires_in_zone(
        ScheduleOptions::new(),
        "Europe/Berlin",
        "@every 1h",
        "2026-03-29T00:30:00Z",
        3,
    );
    assert_eq!(
        berlin,
        [
            "2026-03-29T03:00:00+02:00",
            "2026-03-29T04:00:00+02:00",
            "2026-03-29T05:00:00+02:00"
        ]
    );
    for bad in [
        "@every",
        "@every 0s",
        "@every 5",
        "@every m",
        "@every 5x",
        "@every 1h 30m",
    ] {
        assert!(Schedule::parse(bad).is_err(), "{bad}");
    }
}

#[test]
fn hashed_values_spread_jobs_and_stay_put() {
    let key = |k: &str, expr: &str| ScheduleOptions::new().hash_key(k).parse(expr).unwrap();
    let after = ts("2026-11-22T10:20:00Z");
    // Stable: the same key gives the same minute every time.
    assert_eq!(
        key("report", "H * * * *").next_after(after),
        key("report", "H * * * *").next_after(after)
    );
    // Spread: a thousand `H * * * *` jobs use (nearly) every minute of the hour.
    let mut per_minute = [0u32; 60];
    for i in 0..1000 {
        let fire = key(&format!("job-{i}"), "H * * * *")
            .next_after(after)
            .unwrap();
        per_minute[fire.strftime("%M").to_string().parse::<usize>().unwrap()] += 1;
    }
    assert!(
        per_minute.iter().all(|&n| n > 0),
        "minutes left empty: {per_minute:?}"
    );
    assert!(*per_minute.iter().max().unwrap() < 40, "{per_minute:?}");
    // `H/15` is four minutes a quarter-hour apart; `H(0-9)` stays in its range.
    let quarter: Vec<u32> = key("sync", "H/15 * * * *")
        .fires_after(after)
        .take(4)
        .map(|t| t.strftime("%M").to_string().parse().unwrap())
        .collect();
    assert!(
        quarter.windows(2).all(|w| (w[1] + 60 - w[0]) % 60 == 15),
        "{quarter:?}"
    );
    for i in 0..200 {
        let fire = key(&format!("k{i}"), "H(0-9) 3 * * *")
            .next_after(after)
            .unwrap();
        assert!(fire.strftime("%M").to_string().parse::<u32>().unwrap() <= 9);
    }
    // Hashed days of the month stay within 1-28, so every month has them.
    for i in 0..200 {
        let s = key(&format!("m{i}"), "0 0 H * *");
        assert_eq!(
            s.fires_in(ts("2026-01-01T00:00:00Z")..ts("2027-01-01T00:00:00Z"))
                .count(),
            12
        );
    }
    let e = err("H * * * *");
    assert_eq!(e.field(), Some(Field::Minute));
    assert!(e.reason().contains("hash key"), "{e}");
}

#[test]
fn errors_name_the_field_the_text_and_the_reason() {
    let e = err("61 * * * *");
    assert_eq!(e.field(), Some(Field::Minute));
    assert_eq!(e.text(), "61");
    assert_eq!(e.reason(), "the minute field allows 0-59, got 61");
    assert_eq!(
        e.to_string(),
        "the minute field allows 0-59, got 61\n  61 * * * *\n  ^^"
    );

    let e = err("0 0 31 2 *");
    assert!(e.reason().starts_with("this expression never fires"), "{e}");
    assert_eq!(e.text(), "31 2 *");

    let e = err("0 25 * * *");
    assert_eq!((e.field(), e.text()), (Some(Field::Hour), "25"));
    let e = err("0 0 * 13 *");
    assert_eq!((e.field(), e.text()), (Some(Field::Month), "13"));
    let e = err("0 0 * * 8");
    assert_eq!(e.reason(), "the day-of-week field allows 0-7, got 8");
    let e = err("0 0 * FOO *");
    assert_eq!((e.field(), e.text()), (Some(Field::Month), "FOO"));
    let e = err("0 0 * * 1,,2");
    assert!(e.reason().contains("empty list item"), "{e}");
    let e = err("*/0 * * * *");
    assert_eq!((e.field(), e.text()), (Some(Field::Minute), "0"));
    let e = err("0 17-9 * * *");
    assert!(e.reason().contains("backwards"), "{e}");
    let e = err("? * * * *");
    assert!(e.reason().contains("only allowed in the day"), "{e}");
    let e = err("* * * *");
    assert!(e.reason().contains("found 4"), "{e}");
    assert!(err("").reason().contains("empty"));
    assert!(err("@reboot").reason().contains("@reboot"));
    assert!(err("@fortnightly").reason().contains("unknown alias"));
    assert!(err("0 0 L-31 * *").reason().contains("L-n"));
    assert!(err("0 0 * * L").reason().contains("needs a weekday"));
    assert!(err("0 0 * * FRI#6").reason().contains("1-5"));
    let e = err("0 0 * * * * *");
    assert!(e.reason().contains("found 7"), "{e}");
    // The caret lines up under multi-byte text too.
    let e = err("0 0 * * ÿÿ");
    assert_eq!(e.text(), "ÿÿ");
    assert!(
        e.to_string().ends_with("\n  0 0 * * ÿÿ\n          ^^"),
        "{e}"
    );
}

#[test]
fn spring_forward_gap_policies() {
    let zone = "Europe/Berlin"; // 2026-03-29 02:00 -> 03:00
    let after = "2026-03-28T12:00:00Z";
    let with = |gap| {
        ScheduleOptions::new().dst_policy(DstPolicy {
            gap,
            fold: FoldPolicy::Cron,
        })
    };
    // Fixed-time job: cron runs the skipped 02:30 at 03:00.
    assert_eq!(
        fires_in_zone(with(GapPolicy::Cron), zone, "30 2 * * *", after, 1),
        ["2026-03-29T03:00:00+02:00"]
    );
    assert_eq!(
        fires_in_zone(with(GapPolicy::RunAfterGap), zone, "30 2 * * *", after, 1),
        ["2026-03-29T03:00:00+02:00"]
    );
    assert_eq!(
        fires_in_zone(with(GapPolicy::Skip), zone, "30 2 * * *", after, 1),
        ["2026-03-30T02:30:00+02:00"]
    );
    // Several fixed times in the gap still run once.
    assert_eq!(
        fires_in_zone(with(GapPolicy::Cron), zone, "0,20,40 2 * * *", after, 2),
        ["2026-03-29T03:00:00+02:00", "2026-03-30T02:00:00+02:00"]
    );
    // Wildcard job: cron skips the times that do not exist; RunAfterGap runs them once at 03:00.
    assert_eq!(
        fires_in_zone(
            with(GapPolicy::Cron),
            zone,
            "*/30 * * * *",
            "2026-03-29T00:31:00Z",
            2
        ),
        ["2026-03-29T03:00:00+02:00", "2026-03-29T03:30:00+02:00"]
    );
    assert_eq!(
        fires_in_zone(
            with(GapPolicy::Cron),
            zone,
            "15 * * * *",
            "2026-03-29T00:20:00Z",
            1
        ),
        ["2026-03-29T03:15:00+02:00"]
    );
    assert_eq!(
        fires_in_zone(
            with(GapPolicy::RunAfterGap),
            zone,
            "15 * * * *",
            "2026-03-29T00:20:00Z",
            2
        ),
        ["2026-03-29T03:00:00+02:00", "2026-03-29T03:15:00+02:00"]
    );
}

#[test]
fn fall_back_fold_policies() {
    let zone = "Europe/Berlin"; // 2026-10-25 03:00 CEST -> 02:00 CET
    let after = "2026-10-24T12:00:00Z";
    let with = |fold| {
        ScheduleOptions::new().dst_policy(DstPolicy {
            gap: GapPolicy::Cron,
            fold,
        })
    };
    let fixed = |fold| fires_in_zone(with(fold), zone, "30 2 * * *", after, 2);
    assert_eq!(
        fixed(FoldPolicy::Cron),
        ["2026-10-25T02:30:00+02:00", "2026-10-26T02:30:00+01:00"]
    );
    assert_eq!(
        fixed(FoldPolicy::First),
        ["2026-10-25T02:30:00+02:00", "2026-10-26T02:30:00+01:00"]
    );
    assert_eq!(
        fixed(FoldPolicy::Second),
        ["2026-10-25T02:30:00+01:00", "2026-10-26T02:30:00+01:00"]
    );
    assert_eq!(
        fixed(FoldPolicy::Both),
        ["2026-10-25T02:30:00+02:00", "2026-10-25T02:30:00+01:00"]
    );
    let wildcard = |fold| fires_in_zone(with(fold), zone, "*/30 2 * * *", after, 5);
    assert_eq!(
        wildcard(FoldPolicy::Cron),
        [
            "2026-10-25T02:00:00+02:00",
            "2026-10-25T02:30:00+02:00",
            "2026-10-25T02:00:00+01:00",
            "2026-10-25T02:30:00+01:00",
            "2026-10-26T02:00:00+01:00"
        ]
    );
    assert_eq!(
        wildcard(FoldPolicy::First),
        [
            "2026-10-25T02:00:00+02:00",
            "2026-10-25T02:30:00+02:00",
            "2026-10-26T02:00:00+01:00",
            "2026-10-26T02:30:00+01:00",
            "2026-10-27T02:00:00+01:00"
        ]
    );
    // Starting inside the first pass, after 02:30 CEST: the second pass still comes.
    assert_eq!(
        fires_in_zone(
            with(FoldPolicy::Cron),
            zone,
            "*/30 2 * * *",
            "2026-10-25T00:40:00Z",
            2
        ),
        ["2026-10-25T02:00:00+01:00", "2026-10-25T02:30:00+01:00"]
    );
}

#[test]
fn previous_fires_mirror_next_fires_through_dst() {
    let berlin = TimeZone::get("Europe/Berlin").unwrap();
    for (expr, fold) in [
        ("*/30 2 * * *", FoldPolicy::Cron),
        ("30 2 * * *", FoldPolicy::Cron),
        ("30 2 * * *", FoldPolicy::Second),
        ("*/20 * * * *", FoldPolicy::Both),
        ("0 3 * * *", FoldPolicy::Cron),
    ] {
        let s = ScheduleOptions::new()
            .time_zone(berlin.clone())
            .dst_policy(DstPolicy {
                fold,
                ..DstPolicy::default()
            })
            .parse(expr)
            .unwrap();
        for window in [
            ("2026-03-28T00:00:00Z", "2026-03-30T00:00:00Z"),
            ("2026-10-24T00:00:00Z", "2026-10-26T00:00:00Z"),
        ] {
            let forward: Vec<Timestamp> = s.fires_in(ts(window.0)..ts(window.1)).collect();
            let mut backward = Vec::new();
            let mut cursor = ts(window.1);
            while let Some(p) = s.prev_before(cursor).filter(|p| *p >= ts(window.0)) {
                backward.push(p);
                cursor = p;
            }
            backward.reverse();
            assert_eq!(forward, backward, "{expr} with {fold:?} in {window:?}");
        }
    }
}

#[test]
fn a_schedule_whose_times_all_fall_in_gaps_stops_firing() {
    // Santiago skips 00:00-01:00 on the first Sunday of September (rules since 2019); a wildcard
    // job at 00:xx on the 6th of September when it is a Sunday (`*/7` is Sunday, 0 and 7, and
    // starts with `*`, so both day fields must match) only ever names skipped times.
    let santiago = TimeZone::get("America/Santiago").unwrap();
    let schedule = ScheduleOptions::new()
        .time_zone(santiago.clone())
        .parse("* */5 0 6 9 */7")
        .unwrap();
    assert!(schedule.is_wildcard());
    assert_eq!(schedule.next_after(ts("2026-01-01T00:00:00Z")), None);
    // Under the older rules it did fire, and the search back finds the last time it did.
    let last = schedule.prev_before(ts("2026-01-01T00:00:00Z")).unwrap();
    assert_eq!(
        last.to_zoned(santiago).strftime("%F %T%:z").to_string(),
        "2015-09-06 00:55:59-03:00"
    );
    // With the gap policy `run_after`, the skipped times run once when the clocks jump.
    let run_after = ScheduleOptions::new()
        .time_zone(TimeZone::get("America/Santiago").unwrap())
        .dst_policy(DstPolicy {
            gap: GapPolicy::RunAfterGap,
            fold: FoldPolicy::Cron,
        })
        .parse("* */5 0 6 9 */7")
        .unwrap();
    let fire = run_after.next_after(ts("2026-01-01T00:00:00Z")).unwrap();
    assert_eq!(
        fire.to_zoned(TimeZone::get("America/Santiago").unwrap())
            .strftime("%F %T%:z")
            .to_string(),
        "2026-09-06 01:00:00-03:00"
    );
}
