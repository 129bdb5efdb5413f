//! Plain-English descriptions of schedules, and of what they do on the zone's next DST changes.

use std::fmt::Write as _;

use jiff::tz::TimeZone;
use jiff::Timestamp;

use super::civil::Civil;
use super::cron::{CronSpec, DayCombine};
use super::{FoldPolicy, Schedule};

/// What a schedule means, in words, and how it behaves on the zone's next DST changes.
///
/// ```
/// use cronwarden::schedule::ScheduleOptions;
/// use jiff::{tz::TimeZone, Timestamp};
///
/// let schedule = ScheduleOptions::new()
///     .time_zone(TimeZone::get("Europe/Berlin")?)
///     .parse("30 2 * * *")?;
/// let explanation = schedule.explain("2027-01-01T00:00:00Z".parse()?);
/// assert_eq!(explanation.summary, "At 02:30 every day, Europe/Berlin");
/// assert_eq!(
///     explanation.dst_notes[0],
///     "2027-03-28: clocks jump from 02:00 to 03:00 (+01:00 to +02:00); \
///      the 02:30 run happens once, at 03:00"
/// );
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Explanation {
    /// One sentence: "At 02:30 every day, Europe/Berlin".
    pub summary: String,
    /// One line for each of the zone's next two clock changes, saying what the schedule does
    /// then; a single line when the zone has none or the schedule ignores them.
    pub dst_notes: Vec<String>,
}

const MONTHS: [&str; 13] = [
    "",
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
];
const WEEKDAYS: [&str; 7] = [
    "Sunday",
    "Monday",
    "Tuesday",
    "Wednesday",
    "Thursday",
    "Friday",
    "Saturday",
];
const ORDINALS: [&str; 6] = ["", "first", "second", "third", "fourth", "fifth"];

pub(crate) fn explain(schedule: &Schedule, now: Timestamp) -> Explanation {
    let zone = zone_name(schedule.time_zone());
    let Some(spec) = schedule.cron_spec() else {
        let period = schedule.interval_seconds().unwrap_or(0);
        return Explanation {
            summary: format!("Every {}", duration(period)),
            dst_notes: vec![
                "Intervals count elapsed time, so daylight-saving changes do not move them."
                    .to_owned(),
            ],
        };
    };
    let mut summary = time_of_day(spec);
    let days = days(spec);
    let months = describe_set(u64::from(spec.months), 1, 12, |m| {
        MONTHS[m as usize].to_owned()
    });
    match (&days, &months) {
        // "Every 5 minutes" needs no "every day"; "At 02:30" and "between 09:00 and 17:59" do.
        (None, None) if spec.hours.count_ones() < 24 => summary.push_str(" every day"),
        (None, None) => {}
        (Some(d), _) => {
            summary.push(' ');
            summary.push_str(d);
        }
        (None, Some(_)) => {}
    }
    if let Some(m) = months {
        let _ = write!(summary, " in {m}");
    }
    let _ = write!(summary, ", {zone}");
    Explanation {
        summary,
        dst_notes: dst_notes(schedule, spec, now),
    }
}

fn zone_name(tz: &TimeZone) -> String {
    match tz.iana_name() {
        Some(name) => name.to_owned(),
        None => match tz.to_fixed_offset() {
            Ok(offset) if offset.seconds() == 0 => "UTC".to_owned(),
            Ok(offset) => format!("UTC{offset}"),
            Err(_) => "the given time zone".to_owned(),
        },
    }
}

/// "90 seconds" → "1 minute 30 seconds"; "1 hour" → "hour".
fn duration(seconds: i64) -> String {
    let units = [
        ("day", seconds / 86_400),
        ("hour", seconds / 3600 % 24),
        ("minute", seconds / 60 % 60),
        ("second", seconds % 60),
    ];
    let parts: Vec<String> = units
        .iter()
        .filter(|(_, n)| *n > 0)
        .map(|(unit, n)| format!("{n} {unit}{}", if *n == 1 { "" } else { "s" }))
        .collect();
    match parts.as_slice() {
        [one] if one.starts_with("1 ") => one[2..].to_owned(),
        _ => parts.join(" "),
    }
}

/// The set's values as a contiguous run, a regular step or a list, or `None` when it is every
/// value from `min` to `max`.
fn describe_set(bits: u64, min: u32, max: u32, name: impl Fn(u32) -> String) -> Option<String> {
    let values: Vec<u32> = (min..=max).filter(|v| bits & (1 << v) != 0).collect();
    if values.len() as u32 == max - min + 1 {
        return None;
    }
    Some(list(&values, name))
}

/// "Monday through Friday", "1, 15 and 20 through 25".
fn list(values: &[u32], name: impl Fn(u32) -> String) -> String {
    let mut runs: Vec<(u32, u32)> = Vec::new();
    for &v in values {
        match runs.last_mut() {
            Some((_, end)) if *end + 1 == v => *end = v,
            _ => runs.push((v, v)),
        }
    }
    let items: Vec<String> = runs
        .iter()
        .flat_map(|&(a, b)| match b - a {
            0 => vec![name(a)],
            1 => vec![name(a), name(b)],
            _ => vec![format!("{} through {}", name(a), name(b))],
        })
        .collect();
    join(&items)
}

fn join(items: &[String]) -> String {
    match items {
        [] => String::new(),
        [one] => one.clone(),
        [init @ .., last] => format!("{} and {last}", init.join(", ")),
    }
}

/// The regular step of a set (`*/15` → Some(0, 15)) if it is one.
fn step_of(bits: u64, min: u32, max: u32) -> Option<(u32, u32)> {
    let values: Vec<u32> = (min..=max).filter(|v| bits & (1 << v) != 0).collect();
    if values.len() < 2 {
        return None;
    }
    let step = values[1] - values[0];
    let regular = values.windows(2).all(|w| w[1] - w[0] == step);
    (regular && values[0] < step && values.last().unwrap() + step > max)
        .then_some((values[0], step))
}

fn time_of_day(spec: &CronSpec) -> String {
    let hours: Vec<u32> = (0..24).filter(|h| spec.hours & (1 << h) != 0).collect();
    let minutes: Vec<u32> = (0..60).filter(|m| spec.minutes & (1 << m) != 0).collect();
    let seconds: Vec<u32> = (0..60).filter(|s| spec.seconds & (1 << s) != 0).collect();
    let clock = |h: u32, m: u32, s: u32| {
        if seconds == [0] {
            format!("{h:02}:{m:02}")
        } else {
            format!("{h:02}:{m:02}:{s:02}")
        }
    };
    // A handful of exact times: list them.
    if hours.len() * minutes.len() * seconds.len() <= 4 {
        let mut times = Vec::new();
        for &h in &hours {
            for &m in &minutes {
                for &s in &seconds {
                    times.push(clock(h, m, s));
                }
            }
        }
        return format!("At {}", join(&times));
    }
    let mut out = String::new();
    if seconds.len() == 60 {
        if minutes.len() == 60 && hours.len() == 24 {
            return "Every second".to_owned();
        }
        out.push_str("every second, ");
    } else if seconds.len() > 1 {
        out.push_str(&every_or_at(spec.seconds, 59, "second"));
        out.push_str(", ");
    } else if seconds != [0] {
        let _ = write!(out, "At second {}, ", seconds[0]);
    }
    if minutes.len() == 60 {
        out.push_str("every minute");
    } else {
        out.push_str(&every_or_at(spec.minutes, 59, "minute"));
    }
    if hours.len() < 24 {
        match step_of(u64::from(spec.hours), 0, 23) {
            Some((0, step)) => {
                let _ = write!(out, ", every {step} hours");
            }
            _ => {
                let runs = list(&hours, |h| format!("{h:02}:00"));
                if hours.len() > 1 && hours.windows(2).all(|w| w[1] == w[0] + 1) {
                    let _ = write!(
                        out,
                        ", between {:02}:00 and {:02}:59",
                        hours[0],
                        hours[hours.len() - 1]
                    );
                } else {
                    let _ = write!(out, ", in the hours starting {runs}");
                }
            }
        }
    } else if minutes.len() < 60 && step_of(spec.minutes, 0, 59).is_none() {
        out.push_str(" of every hour");
    }
    let mut chars = out.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => out,
    }
}

/// "every 15 minutes", "at minutes 0 and 30", "at minute 5".
fn every_or_at(bits: u64, max: u32, unit: &str) -> String {
    if let Some((start, step)) = step_of(bits, 0, max) {
        return if start == 0 {
            format!("every {step} {unit}s")
        } else {
            format!("every {step} {unit}s from {unit} {start}")
        };
    }
    let values: Vec<u32> = (0..=max).filter(|v| bits & (1 << v) != 0).collect();
    let plural = if values.len() == 1 { "" } else { "s" };
    format!("at {unit}{plural} {}", list(&values, |v| v.to_string()))
}

/// The day-of-month part ("on the last day of the month"), or `None` for every day.
fn days_of_month(spec: &CronSpec) -> Option<String> {
    let mut parts = Vec::new();
    if let Some(days) = describe_set(u64::from(spec.days_of_month), 1, 31, |d| d.to_string()) {
        if let Some((start, step)) = step_of(u64::from(spec.days_of_month), 1, 31)
            .filter(|_| spec.days_of_month.count_ones() > 3)
        {
            parts.push(format!(
                "every {step} days of the month starting on day {start}"
            ));
        } else if spec.days_of_month != 0 {
            let plural = if spec.days_of_month.count_ones() == 1 {
                ""
            } else {
                "s"
            };
            parts.push(format!("day{plural} {days} of the month"));
        }
    } else if spec.last_day_offsets == 0
        && spec.nearest_weekdays == 0
        && !spec.last_weekday_of_month
    {
        return None;
    } else {
        parts.push("every day of the month".to_owned());
    }
    for n in (0..31).filter(|n| spec.last_day_offsets & (1 << n) != 0) {
        parts.push(match n {
            0 => "the last day of the month".to_owned(),
            1 => "the day before the last day of the month".to_owned(),
            n => format!("{n} days before the last day of the month"),
        });
    }
    for d in (1..32).filter(|d| spec.nearest_weekdays & (1 << d) != 0) {
        parts.push(format!("the weekday nearest day {d} of the month"));
    }
    if spec.last_weekday_of_month {
        parts.push("the last weekday of the month".to_owned());
    }
    Some(join(&parts))
}

/// The day-of-week part ("on Monday through Friday"), or `None` for every day.
fn days_of_week(spec: &CronSpec) -> Option<String> {
    let mut parts = Vec::new();
    let has_rules = spec.last_weekday != 0 || spec.nth_weekday.iter().any(|&n| n != 0);
    match describe_set(u64::from(spec.days_of_week), 0, 6, |w| {
        WEEKDAYS[w as usize].to_owned()
    }) {
        Some(_) if spec.days_of_week == 0 => {}
        Some(days) => parts.push(days),
        None if has_rules => parts.push("every day of the week".to_owned()),
        None => return None,
    }
    for (w, &nth) in spec.nth_weekday.iter().enumerate() {
        for n in (1..=5).filter(|n| nth & (1 << n) != 0) {
            parts.push(format!("the {} {} of the month", ORDINALS[n], WEEKDAYS[w]));
        }
    }
    for w in (0..7).filter(|w| spec.last_weekday & (1 << w) != 0) {
        parts.push(format!("the last {} of the month", WEEKDAYS[w]));
    }
    Some(join(&parts))
}

/// "on Monday", but "every 2 days ..." as it is.
fn on(days: &str) -> String {
    if days.starts_with("every ") {
        days.to_owned()
    } else {
        format!("on {days}")
    }
}

fn days(spec: &CronSpec) -> Option<String> {
    let dom = days_of_month(spec);
    let dow = days_of_week(spec);
    match (dom, dow, spec.combine) {
        (None, None, _) => None,
        (Some(d), None, _) | (None, Some(d), _) => Some(on(&d)),
        (Some(a), Some(b), DayCombine::Or) => Some(format!("{}, or {}", on(&a), on(&b))),
        (Some(a), Some(b), DayCombine::And) => Some(format!("{}, if it is also {b}", on(&a))),
    }
}

fn clock(c: Civil) -> String {
    if c.second == 0 {
        format!("{:02}:{:02}", c.hour, c.minute)
    } else {
        format!("{:02}:{:02}:{:02}", c.hour, c.minute, c.second)
    }
}

/// "the 02:30 run happens" / "the 02:00, 02:05, 02:10 and later runs happen".
fn runs_subject(times: &[String], singular: &str, plural: &str) -> String {
    match times {
        [one] => format!("the {one} run {singular}"),
        _ if times.len() > 3 => format!("the {} and later runs {plural}", times[..3].join(", ")),
        _ => format!("the {} runs {plural}", join(times)),
    }
}

/// "+01:00", "+05:30", "-03:00".
fn offset_text(seconds: i64) -> String {
    let sign = if seconds < 0 { '-' } else { '+' };
    let s = seconds.abs();
    format!("{sign}{:02}:{:02}", s / 3600, s / 60 % 60)
}

fn dst_notes(schedule: &Schedule, spec: &CronSpec, now: Timestamp) -> Vec<String> {
    let tz = schedule.time_zone();
    if tz.to_fixed_offset().is_ok() {
        return vec![format!("{} has no daylight-saving changes.", zone_name(tz))];
    }
    let horizon = now.as_second() + 2 * 366 * 86_400;
    // `following` runs to the year 9999: stop at the horizon, not after scanning all of it.
    let transitions: Vec<_> = tz
        .following(now)
        .take_while(|t| t.timestamp().as_second() < horizon)
        .take(2)
        .collect();
    if transitions.is_empty() {
        return vec![format!(
            "{} has no clock changes in the next two years.",
            zone_name(tz)
        )];
    }
    transitions
        .iter()
        .map(|t| {
            let at = t.timestamp().as_second();
            let Ok(before_ts) = Timestamp::from_second(at - 1) else {
                return String::new();
            };
            let before = i64::from(tz.to_offset(before_ts).seconds());
            let after = i64::from(t.offset().seconds());
            let (from, to) = (
                Civil::from_local_seconds(at + before),
                Civil::from_local_seconds(at + after),
            );
            let day = format!("{:04}-{:02}-{:02}", from.year, from.month, from.day);
            let offsets = format!("({} to {})", offset_text(before), offset_text(after));
            // The civil times in the skipped or repeated interval at which the job is due.
            let (start, end) = if after > before {
                (from, to)
            } else {
                (to, from)
            };
            let mut due = Vec::new();
            let mut cursor = start;
            while let Some(m) = spec.next_civil(cursor).filter(|m| *m < end) {
                due.push(clock(m));
                cursor = m.succ();
                if due.len() > 3 {
                    break;
                }
            }
            if after > before {
                let head = format!(
                    "{day}: clocks jump from {} to {} {offsets}",
                    clock(from),
                    clock(to)
                );
                if due.is_empty() {
                    format!("{head}; no run falls in the skipped time")
                } else if schedule.runs_after_gap() {
                    format!(
                        "{head}; {} once, at {}",
                        runs_subject(&due, "happens", "happen"),
                        clock(to)
                    )
                } else {
                    format!(
                        "{head}; {} skipped that day",
                        runs_subject(&due, "is", "are")
                    )
                }
            } else {
                let head = format!(
                    "{day}: clocks go back from {} to {} {offsets}, so {} to {} happens twice",
                    clock(from),
                    clock(to),
                    clock(to),
                    clock(from)
                );
                if due.is_empty() {
                    format!("{head}; no run falls in the repeated time")
                } else {
                    let runs = runs_subject(&due, "happens", "happen");
                    match schedule.effective_fold() {
                        FoldPolicy::Second => format!("{head}; {runs} in the second pass only"),
                        FoldPolicy::Both => format!("{head}; {runs} in both passes"),
                        _ => format!("{head}; {runs} in the first pass only"),
                    }
                }
            }
        })
        .collect()
}
