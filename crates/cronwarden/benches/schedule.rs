//! Schedule benchmarks: cronwarden beside `croner` (4.0.3) and `cron` (0.17.0), measured in one
//! run on the same expressions, zones and start instants.
//!
//! Run with:
//!
//! ```text
//! cargo bench -p cronwarden --bench schedule -- --warm-up-time 1 --measurement-time 3
//! ```
//!
//! Groups:
//!
//! - `parse/<expr>`: parsing one expression (functions `cronwarden`, `croner`, `cron`);
//! - `next/<expr>@<zone>`: the first fire strictly after an instant, cycling through
//!   [`START_INSTANTS`] (twelve instants spread over 2026), so one iteration is one next-fire
//!   computation from a different start than the last;
//! - `next/iterate-100`: 100 consecutive fires from one start, per library and case.
//!
//! Adaptations so that the three libraries compute the same thing:
//!
//! - `cron` requires a seconds field (6 or 7 fields): every 5-field expression is given to it
//!   with `"0 "` prepended, i.e. at second 0, which is what a 5-field expression means in the
//!   other two. The prefixed string is built outside the timed loop.
//! - `cron` numbers weekdays 1-7 from Sunday, the others 0-7 from Sunday (0 and 7 both Sunday):
//!   the expressions name weekdays (`MON-FRI`) so that every library reads the same days.
//! - `cron` has no `L`, `W` or `#`: the expressions using them are measured for cronwarden and
//!   croner only.
//! - `cron` combines day-of-month and day-of-week with AND; cronwarden and croner (by default)
//!   follow Vixie cron, where two restricted day fields combine with OR. For `0 0 1,15 * MON`
//!   `cron` therefore answers a different question; it is still timed, and the agreement check
//!   lists its different answers, but its ratio is not like-for-like.
//! - Inputs: cronwarden takes a `jiff::Timestamp` (its zone lives in the parsed `Schedule`);
//!   croner and cron take a `chrono::DateTime<Tz>` in the zone (`chrono_tz::Tz` for named zones,
//!   `chrono::Utc` for UTC, each library's natural UTC type). All inputs are built before timing.
//! - "next after t" is: cronwarden `next_after(t)`, croner `find_next_occurrence(&t, false)`
//!   (exclusive), cron `after(&t).next()`. All three are strictly after `t`; the start instants
//!   are whole seconds, as `cron` steps one whole second past its input.
//!
//! Before timing, `check_agreement` compares the first fire of every (expression, zone, start)
//! and the 100 fires of the iterate cases, and prints any disagreement (it never panics).

use std::hint::black_box;
use std::str::FromStr;

use chrono::{DateTime, TimeZone as _, Utc};
use criterion::measurement::WallTime;
use criterion::{BenchmarkGroup, BenchmarkId, Criterion};
use cronwarden::schedule::{Schedule, ScheduleOptions};
use jiff::Timestamp;

/// The expressions, and whether the `cron` crate supports them.
const EXPRESSIONS: &[(&str, bool)] = &[
    ("*/5 * * * *", true),
    ("30 2 * * *", true),
    ("0 9 * * MON-FRI", true),
    // `cron` reads this with AND (1st/15th that is also a Monday), the others with OR.
    ("0 0 1,15 * MON", true),
    ("15,45 */2 1-10 JAN-JUN *", true),
    // `L` (last day of month) and `#` (n-th weekday): cronwarden and croner only.
    ("0 12 L * *", false),
    ("0 9 * * FRI#3", false),
];

const ZONES: &[&str] = &["UTC", "America/New_York", "Europe/Berlin"];

/// Start instants spread over 2026, at varied times of day, in whole seconds. Two sit just
/// before a DST change (2026-03-08 in New York, 2026-10-25 in Berlin).
const START_INSTANTS: &[&str] = &[
    "2026-01-07T03:17:41Z",
    "2026-02-12T14:02:09Z",
    "2026-03-08T05:10:00Z",
    "2026-04-19T22:45:13Z",
    "2026-05-31T09:00:00Z",
    "2026-06-15T17:29:58Z",
    "2026-07-04T00:00:01Z",
    "2026-08-23T11:11:11Z",
    "2026-09-30T23:59:59Z",
    "2026-10-24T23:20:00Z",
    "2026-11-11T06:33:27Z",
    "2026-12-31T19:05:44Z",
];

/// The iterate-100 cases: (expression, zone), from the first start instant.
const ITERATE_CASES: &[(&str, &str)] =
    &[("*/5 * * * *", "UTC"), ("0 9 * * MON-FRI", "Europe/Berlin")];

/// The `cron` crate's form of a 5-field expression: a seconds field of `0` in front.
fn cron_crate_expr(expr: &str) -> String {
    format!("0 {expr}")
}

fn ours(expr: &str, zone: &str) -> Schedule {
    ScheduleOptions::new()
        .time_zone(jiff::tz::TimeZone::get(zone).expect("zone"))
        .parse(expr)
        .unwrap_or_else(|e| panic!("cronwarden failed to parse {expr:?}: {e}"))
}

fn croner_parse(expr: &str) -> croner::Cron {
    croner::Cron::from_str(expr)
        .unwrap_or_else(|e| panic!("croner failed to parse {expr:?}: {e:?}"))
}

fn cron_parse(expr: &str) -> cron::Schedule {
    let e = cron_crate_expr(expr);
    cron::Schedule::from_str(&e).unwrap_or_else(|err| panic!("cron failed to parse {e:?}: {err}"))
}

fn starts_jiff() -> Vec<Timestamp> {
    START_INSTANTS
        .iter()
        .map(|s| s.parse().expect("instant"))
        .collect()
}

fn starts_chrono<Z: chrono::TimeZone>(zone: &Z) -> Vec<DateTime<Z>> {
    starts_jiff()
        .iter()
        .map(|t| {
            zone.timestamp_opt(t.as_second(), 0)
                .single()
                .expect("instant")
        })
        .collect()
}

fn chrono_tz(zone: &str) -> chrono_tz::Tz {
    zone.parse().expect("chrono-tz zone")
}

fn fmt_secs(s: Option<i64>) -> String {
    match s.and_then(|s| Timestamp::from_second(s).ok()) {
        Some(t) => t.to_string(),
        None => "none".to_string(),
    }
}

/// Compares the libraries' answers, outside timing. Prints disagreements; never panics.
fn check_agreement() {
    let starts = starts_jiff();
    let mut disagreements = 0usize;
    let mut checked = 0usize;
    for &(expr, cron_ok) in EXPRESSIONS {
        for &zone in ZONES {
            let ours = ours(expr, zone);
            let croner = croner_parse(expr);
            let cron = cron_ok.then(|| cron_parse(expr));
            let (croner_ans, cron_ans): (Vec<Option<i64>>, Vec<Option<i64>>) = if zone == "UTC" {
                let dts = starts_chrono(&Utc);
                first_fires_chrono(&croner, cron.as_ref(), &dts)
            } else {
                let dts = starts_chrono(&chrono_tz(zone));
                first_fires_chrono(&croner, cron.as_ref(), &dts)
            };
            for (i, &t) in starts.iter().enumerate() {
                checked += 1;
                let o = ours.next_after(t).map(|t| t.as_second());
                let level = if zone == "UTC" { "WARNING" } else { "note" };
                if croner_ans[i] != o {
                    disagreements += 1;
                    println!(
                        "{level}: {expr:?} in {zone} after {t}: cronwarden {} but croner {}",
                        fmt_secs(o),
                        fmt_secs(croner_ans[i])
                    );
                }
                if cron_ok && cron_ans[i] != o {
                    disagreements += 1;
                    println!(
                        "{level}: {expr:?} in {zone} after {t}: cronwarden {} but cron {}",
                        fmt_secs(o),
                        fmt_secs(cron_ans[i])
                    );
                }
            }
        }
    }
    for &(expr, zone) in ITERATE_CASES {
        let o: Vec<i64> = ours(expr, zone)
            .fires_after(starts[0])
            .take(100)
            .map(|t| t.as_second())
            .collect();
        let croner = croner_parse(expr);
        let cron = cron_parse(expr);
        let (a, b): (Vec<i64>, Vec<i64>) = if zone == "UTC" {
            let dt = starts_chrono(&Utc).swap_remove(0);
            (
                croner
                    .iter_after(dt)
                    .take(100)
                    .map(|d| d.timestamp())
                    .collect(),
                cron.after(&dt).take(100).map(|d| d.timestamp()).collect(),
            )
        } else {
            let dt = starts_chrono(&chrono_tz(zone)).swap_remove(0);
            (
                croner
                    .iter_after(dt)
                    .take(100)
                    .map(|d| d.timestamp())
                    .collect(),
                cron.after(&dt).take(100).map(|d| d.timestamp()).collect(),
            )
        };
        checked += 1;
        if a != o {
            disagreements += 1;
            println!("WARNING: iterate-100 {expr:?} in {zone}: cronwarden and croner differ");
        }
        if b != o {
            disagreements += 1;
            println!("WARNING: iterate-100 {expr:?} in {zone}: cronwarden and cron differ");
        }
    }
    println!("agreement check: {checked} cases, {disagreements} disagreement(s) listed above");
}

fn first_fires_chrono<Z: chrono::TimeZone>(
    croner: &croner::Cron,
    cron: Option<&cron::Schedule>,
    dts: &[DateTime<Z>],
) -> (Vec<Option<i64>>, Vec<Option<i64>>) {
    let a = dts
        .iter()
        .map(|d| {
            croner
                .find_next_occurrence(d, false)
                .ok()
                .map(|d| d.timestamp())
        })
        .collect();
    let b = dts
        .iter()
        .map(|d| cron.and_then(|c| c.after(d).next()).map(|d| d.timestamp()))
        .collect();
    (a, b)
}

fn bench_parse(c: &mut Criterion) {
    for &(expr, cron_ok) in EXPRESSIONS {
        let mut g = c.benchmark_group(format!("parse/{expr}"));
        g.bench_function("cronwarden", |b| {
            b.iter(|| Schedule::parse(black_box(expr)))
        });
        g.bench_function("croner", |b| {
            b.iter(|| croner::Cron::from_str(black_box(expr)))
        });
        if cron_ok {
            // Seconds field prepended outside the timed loop (see the module docs).
            let e = cron_crate_expr(expr);
            g.bench_function("cron", |b| {
                b.iter(|| cron::Schedule::from_str(black_box(&e)))
            });
        }
        g.finish();
    }
}

/// Times one next-fire computation per iteration, cycling through the start instants.
fn bench_next_case<Z: chrono::TimeZone>(
    g: &mut BenchmarkGroup<'_, WallTime>,
    ours: &Schedule,
    croner: &croner::Cron,
    cron: Option<&cron::Schedule>,
    starts: &[Timestamp],
    dts: &[DateTime<Z>],
) {
    let n = starts.len();
    g.bench_function("cronwarden", |b| {
        let mut i = 0;
        b.iter(|| {
            let t = starts[i];
            i = if i + 1 == n { 0 } else { i + 1 };
            ours.next_after(black_box(t))
        })
    });
    g.bench_function("croner", |b| {
        let mut i = 0;
        b.iter(|| {
            let t = &dts[i];
            i = if i + 1 == n { 0 } else { i + 1 };
            croner.find_next_occurrence(black_box(t), false)
        })
    });
    if let Some(cron) = cron {
        g.bench_function("cron", |b| {
            let mut i = 0;
            b.iter(|| {
                let t = &dts[i];
                i = if i + 1 == n { 0 } else { i + 1 };
                cron.after(black_box(t)).next()
            })
        });
    }
}

fn bench_next(c: &mut Criterion) {
    let starts = starts_jiff();
    for &(expr, cron_ok) in EXPRESSIONS {
        for &zone in ZONES {
            let ours = ours(expr, zone);
            let croner = croner_parse(expr);
            let cron = cron_ok.then(|| cron_parse(expr));
            let mut g = c.benchmark_group(format!("next/{expr}@{zone}"));
            if zone == "UTC" {
                let dts = starts_chrono(&Utc);
                bench_next_case(&mut g, &ours, &croner, cron.as_ref(), &starts, &dts);
            } else {
                let dts = starts_chrono(&chrono_tz(zone));
                bench_next_case(&mut g, &ours, &croner, cron.as_ref(), &starts, &dts);
            }
            g.finish();
        }
    }
}

fn bench_iterate_case<Z: chrono::TimeZone>(
    g: &mut BenchmarkGroup<'_, WallTime>,
    case: &str,
    ours: &Schedule,
    croner: &croner::Cron,
    cron: &cron::Schedule,
    start: Timestamp,
    dt: &DateTime<Z>,
) {
    // Each library's own iterator over consecutive fires (croner's `iter_after` clones the
    // parsed `Cron` once per call; that is part of its API's cost).
    g.bench_function(BenchmarkId::new("cronwarden", case), |b| {
        b.iter(|| {
            for f in ours.fires_after(black_box(start)).take(100) {
                black_box(f);
            }
        })
    });
    g.bench_function(BenchmarkId::new("croner", case), |b| {
        b.iter(|| {
            for f in croner.iter_after(black_box(dt).clone()).take(100) {
                black_box(f);
            }
        })
    });
    g.bench_function(BenchmarkId::new("cron", case), |b| {
        b.iter(|| {
            for f in cron.after(black_box(dt)).take(100) {
                black_box(f);
            }
        })
    });
}

fn bench_iterate(c: &mut Criterion) {
    let start = starts_jiff()[0];
    let mut g = c.benchmark_group("next/iterate-100");
    for &(expr, zone) in ITERATE_CASES {
        let case = format!("{expr}@{zone}");
        let ours = ours(expr, zone);
        let croner = croner_parse(expr);
        let cron = cron_parse(expr);
        if zone == "UTC" {
            let dt = Utc.timestamp_opt(start.as_second(), 0).unwrap();
            bench_iterate_case(&mut g, &case, &ours, &croner, &cron, start, &dt);
        } else {
            let dt = chrono_tz(zone).timestamp_opt(start.as_second(), 0).unwrap();
            bench_iterate_case(&mut g, &case, &ours, &croner, &cron, start, &dt);
        }
    }
    g.finish();
}

fn main() {
    check_agreement();
    let mut c = Criterion::default().configure_from_args();
    bench_parse(&mut c);
    bench_next(&mut c);
    bench_iterate(&mut c);
    c.final_summary();
}
