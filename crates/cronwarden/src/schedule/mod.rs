//! Schedules: when a job fires.
//!
//! A [`Schedule`] is a parsed expression together with the time zone it runs in and its
//! daylight-saving policy. It answers three questions, always in instants ([`Timestamp`]s):
//! the next fire after an instant, the previous fire before one, and every fire in a window.
//!
//! # Expressions
//!
//! | form | example | meaning |
//! |---|---|---|
//! | 5 fields | `30 2 * * *` | minute hour day-of-month month day-of-week |
//! | 6 fields | `0 30 2 * * *` | a seconds field first |
//! | lists, ranges, steps | `0,30 9-17 */2 * MON-FRI` | `N/s` means `N-max/s` |
//! | names | `JAN`-`DEC`, `SUN`-`SAT` | any case; weekdays 0-7, 0 and 7 are Sunday |
//! | `?` | `0 0 ? * MON` | `*`, in the day fields only |
//! | last day | `L`, `L-3` | the last day, the third day before the last |
//! | nearest weekday | `15W`, `LW` | Monday-Friday nearest the 15th / the last weekday, never leaving the month |
//! | n-th / last weekday | `FRI#3`, `5L` | the third Friday / the last Friday |
//! | hashed | `H 2 * * *`, `H/15 * * * *`, `H(0-29) 1 * * *` | a value derived from the job's name, spreading jobs out |
//! | aliases | `@yearly @annually @monthly @weekly @daily @midnight @hourly` | |
//! | intervals | `@every 90s`, `@every 1h30m` | every period from an origin (the Unix epoch unless set) |
//! | named | `every_5_minutes`, `every_15_minutes`, `hourly`, `daily`, `weekly`, `monthly`, `cron:0 2 * * *` | forms that existing applications store |
//!
//! # Which days match
//!
//! As in Vixie cron: when neither day field starts with `*`, a day matches if the day-of-month
//! **or** the day-of-week matches (`0 0 13 * FRI` fires on every 13th and every Friday); when
//! either starts with `*` (even `*/2`), both must match.
//!
//! # Daylight-saving time
//!
//! Expressions are evaluated in the schedule's time zone, on wall-clock time. Twice a year in
//! many zones, wall-clock times are skipped (a *gap*: clocks jump from 02:00 to 03:00) or repeat
//! (a *fold*: 02:00-03:00 happens twice). What a job does then depends on its kind:
//!
//! - a **fixed-time** job (the second, minute and hour fields all name values, like `30 2 * * *`)
//!   whose time falls in a gap runs once, at the first instant after the gap (03:00); in a fold
//!   it runs only in the first pass;
//! - a **wildcard** job (the second, minute or hour field starts with `*`, or is a hashed step
//!   such as `H/15`) skips the times in a gap and runs at the repeated times in both passes.
//!
//! These are the rules cron has followed for decades; [`DstPolicy`] lets a job choose otherwise.
//! Every result is strictly after the instant asked about, and a sequence of fires strictly
//! increases, even through a fold.

mod civil;
mod cron;
mod error;
mod explain;
mod hash;
mod parse;

use std::ops::Range;

use jiff::tz::{AmbiguousOffset, TimeZone};
use jiff::Timestamp;

use self::civil::Civil;
use self::cron::CronSpec;
pub use self::error::{Field, ParseError};
pub use self::explain::Explanation;
use self::parse::Parsed;

/// What a job does when its wall-clock time is skipped by a daylight-saving jump.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum GapPolicy {
    /// Cron's rule: fixed-time jobs run at the first instant after the gap; wildcard jobs skip
    /// the missing times.
    #[default]
    Cron,
    /// Run once at the first instant after the gap.
    RunAfterGap,
    /// Do not run for times that do not exist that day.
    Skip,
}

/// What a job does when its wall-clock time happens twice because clocks were set back.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum FoldPolicy {
    /// Cron's rule: fixed-time jobs run in the first pass only; wildcard jobs run in both.
    #[default]
    Cron,
    /// Run in the first pass only (the earlier instant).
    First,
    /// Run in the second pass only (the later instant).
    Second,
    /// Run in both passes.
    Both,
}

/// How a schedule treats the wall-clock times that daylight-saving changes skip or repeat.
///
/// The default follows cron (see the [module docs](self)).
///
/// ```
/// use cronwarden::schedule::{DstPolicy, FoldPolicy, ScheduleOptions};
/// use jiff::{tz::TimeZone, Timestamp};
///
/// // A 02:30 job on the night Berlin sets its clocks back (2026-10-25), run in the second pass.
/// let schedule = ScheduleOptions::new()
///     .time_zone(TimeZone::get("Europe/Berlin")?)
///     .dst_policy(DstPolicy { fold: FoldPolicy::Second, ..DstPolicy::default() })
///     .parse("30 2 * * *")?;
/// let after: Timestamp = "2026-10-24T12:00:00Z".parse()?;
/// let fire = schedule.next_after(after).unwrap();
/// assert_eq!(fire.to_string(), "2026-10-25T01:30:00Z"); // 02:30+01:00, the second 02:30
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct DstPolicy {
    /// For times skipped by a spring-forward jump.
    pub gap: GapPolicy,
    /// For times repeated by a fall-back change.
    pub fold: FoldPolicy,
}

/// Options for parsing a [`Schedule`]: the time zone, the DST policy, the key behind `H` and the
/// origin of `@every` intervals.
#[derive(Clone, Debug)]
pub struct ScheduleOptions {
    time_zone: TimeZone,
    dst_policy: DstPolicy,
    hash_key: Option<String>,
    origin: Timestamp,
}

impl Default for ScheduleOptions {
    fn default() -> Self {
        ScheduleOptions {
            time_zone: TimeZone::UTC,
            dst_policy: DstPolicy::default(),
            hash_key: None,
            origin: Timestamp::UNIX_EPOCH,
        }
    }
}

impl ScheduleOptions {
    /// UTC, cron's DST rules, no hash key, intervals counted from the Unix epoch.
    pub fn new() -> Self {
        ScheduleOptions::default()
    }

    /// The time zone the expression is evaluated in (default UTC).
    pub fn time_zone(mut self, time_zone: TimeZone) -> Self {
        self.time_zone = time_zone;
        self
    }

    /// How the schedule behaves when DST skips or repeats its wall-clock times.
    pub fn dst_policy(mut self, policy: DstPolicy) -> Self {
        self.dst_policy = policy;
        self
    }

    /// The key that `H` fields hash, normally the job's name. Without one, `H` is an error.
    pub fn hash_key(mut self, key: impl Into<String>) -> Self {
        self.hash_key = Some(key.into());
        self
    }

    /// The instant `@every` intervals count from: fires are at `origin + k * period` for
    /// `k >= 0`. Sub-second parts are dropped. Default: the Unix epoch.
    pub fn origin(mut self, origin: Timestamp) -> Self {
        self.origin = origin;
        self
    }

    /// Parses `expression` with these options.
    pub fn parse(self, expression: &str) -> Result<Schedule, ParseError> {
        let parsed = parse::parse(expression, self.hash_key.as_deref())?;
        let kind = match parsed {
            Parsed::Cron(spec) => Kind::Cron(spec),
            Parsed::Every(period) => Kind::Every {
                period,
                origin: floor_second(self.origin),
            },
        };
        let wildcard = matches!(&kind, Kind::Cron(spec) if spec.wildcard);
        let fold = match self.dst_policy.fold {
            FoldPolicy::Cron if wildcard => FoldPolicy::Both,
            FoldPolicy::Cron => FoldPolicy::First,
            other => other,
        };
        let run_after_gap = match self.dst_policy.gap {
            GapPolicy::Cron => !wildcard,
            GapPolicy::RunAfterGap => true,
            GapPolicy::Skip => false,
        };
        let fixed_offset = self
            .time_zone
            .to_fixed_offset()
            .ok()
            .map(|o| i64::from(o.seconds()));
        Ok(Schedule {
            expression: expression.into(),
            kind,
            time_zone: self.time_zone,
            policy: self.dst_policy,
            fold,
            run_after_gap,
            fixed_offset,
        })
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Kind {
    Cron(CronSpec),
    Every { period: i64, origin: i64 },
}

/// A parsed schedule in a time zone: computes fire instants.
///
/// ```
/// use cronwarden::schedule::{Schedule, ScheduleOptions};
/// use jiff::{tz::TimeZone, Timestamp};
///
/// let berlin = TimeZone::get("Europe/Berlin")?;
/// let schedule = ScheduleOptions::new().time_zone(berlin.clone()).parse("30 2 * * *")?;
/// // 02:30 does not exist in Berlin on 2026-03-29: the job runs at 03:00, right after the jump.
/// let after: Timestamp = "2026-03-28T22:00:00Z".parse()?;
/// let fires: Vec<String> = schedule
///     .fires_after(after)
///     .take(2)
///     .map(|t| t.to_zoned(berlin.clone()).strftime("%FT%T%:z").to_string())
///     .collect();
/// assert_eq!(fires, ["2026-03-29T03:00:00+02:00", "2026-03-30T02:30:00+02:00"]);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Debug)]
pub struct Schedule {
    expression: Box<str>,
    kind: Kind,
    time_zone: TimeZone,
    policy: DstPolicy,
    /// The fold policy with `Cron` resolved for this expression's kind.
    fold: FoldPolicy,
    /// The gap policy with `Cron` resolved: run at the end of a gap, or skip.
    run_after_gap: bool,
    /// The zone's offset in seconds when it never changes (UTC, `Etc/GMT+5`): no lookups then.
    fixed_offset: Option<i64>,
}

/// The offset in force at an instant, and the zone's next change after it.
struct OffsetWindow {
    /// The offset (seconds east of UTC) at the instant.
    offset: i64,
    /// When it next changes (`i64::MAX`: never).
    until: i64,
    /// The offset from then on.
    next_offset: i64,
}

/// A civil time as the time zone resolves it.
enum Resolved {
    Unique(i64),
    /// The time was skipped: the clocks jumped at instant `end`, from the wall-clock time
    /// `start_local` to `end_local` (local seconds).
    Gap {
        end: i64,
        start_local: i64,
        end_local: i64,
    },
    /// The time happened twice, at these two instants.
    Fold {
        first: i64,
        second: i64,
    },
}

/// The whole seconds of `t`, rounded down (so that negative instants round toward the past).
fn floor_second(t: Timestamp) -> i64 {
    let s = t.as_second();
    if t.subsec_nanosecond() < 0 {
        s - 1
    } else {
        s
    }
}

fn timestamp(seconds: i64) -> Option<Timestamp> {
    Timestamp::from_second(seconds).ok()
}

impl Schedule {
    /// Parses `expression` in UTC with cron's DST rules (see [`ScheduleOptions`] for the rest).
    ///
    /// ```
    /// use cronwarden::schedule::Schedule;
    ///
    /// let err = Schedule::parse("61 * * * *").unwrap_err();
    /// assert_eq!(err.reason(), "the minute field allows 0-59, got 61");
    /// assert!(Schedule::parse("0 0 31 2 *").unwrap_err().reason().contains("never fires"));
    /// ```
    pub fn parse(expression: &str) -> Result<Schedule, ParseError> {
        ScheduleOptions::new().parse(expression)
    }

    /// The expression as it was given.
    pub fn expression(&self) -> &str {
        &self.expression
    }

    /// The time zone the expression is evaluated in.
    pub fn time_zone(&self) -> &TimeZone {
        &self.time_zone
    }

    /// The DST policy as configured (`Cron` where not overridden).
    pub fn dst_policy(&self) -> DstPolicy {
        self.policy
    }

    /// Whether this is a wildcard job for the DST rules (its second, minute or hour field starts
    /// with `*`). Intervals are neither: they count real time and ignore wall clocks.
    pub fn is_wildcard(&self) -> bool {
        matches!(&self.kind, Kind::Cron(spec) if spec.wildcard)
    }

    /// The `@every` period in seconds, if this is an interval schedule.
    pub fn interval_seconds(&self) -> Option<i64> {
        match self.kind {
            Kind::Every { period, .. } => Some(period),
            Kind::Cron(_) => None,
        }
    }

    /// The first fire strictly after `after`.
    ///
    /// `None` when the schedule never fires again: past the year 9998, or when every remaining
    /// time it names is skipped by a DST gap that the policy skips (a wildcard job at 00:xx on
    /// the first Sunday of September in America/Santiago, where midnight does not exist).
    pub fn next_after(&self, after: Timestamp) -> Option<Timestamp> {
        let t = floor_second(after);
        match &self.kind {
            Kind::Every { period, origin } => {
                let k = if t < *origin {
                    0
                } else {
                    (t - origin) / period + 1
                };
                timestamp(origin.checked_add(k.checked_mul(*period)?)?)
            }
            Kind::Cron(spec) => timestamp(self.next_cron(spec, t)?),
        }
    }

    /// The last fire strictly before `before`, or `None` if there is none (before an
    /// interval's origin, or before the year -9998).
    pub fn prev_before(&self, before: Timestamp) -> Option<Timestamp> {
        // Fires are whole seconds: the last one before `before` is at or before this second.
        let mut t = floor_second(before);
        if before.subsec_nanosecond() == 0 {
            t -= 1;
        }
        match &self.kind {
            Kind::Every { period, origin } => {
                if t < *origin {
                    return None;
                }
                timestamp(origin + (t - origin) / period * period)
            }
            Kind::Cron(spec) => timestamp(self.prev_cron(spec, t)?),
        }
    }

    /// Whether `at` is one of the schedule's fires.
    pub fn fires_at(&self, at: Timestamp) -> bool {
        at.checked_sub(jiff::SignedDuration::from_nanos(1))
            .is_ok_and(|before| self.next_after(before) == Some(at))
    }

    /// The fires strictly after `after`, in increasing order.
    pub fn fires_after(&self, after: Timestamp) -> Fires<'_> {
        Fires {
            schedule: self,
            cursor: Some(after),
            end: None,
        }
    }

    /// The fires `f` with `window.start <= f < window.end`, in increasing order.
    pub fn fires_in(&self, window: Range<Timestamp>) -> Fires<'_> {
        let cursor = window
            .start
            .checked_sub(jiff::SignedDuration::from_nanos(1))
            .ok();
        Fires {
            schedule: self,
            cursor,
            end: Some(window.end),
        }
    }

    /// A plain-English description of the schedule and how it behaves on the zone's next DST
    /// changes after `now`.
    pub fn explain(&self, now: Timestamp) -> Explanation {
        explain::explain(self, now)
    }

    pub(crate) fn cron_spec(&self) -> Option<&CronSpec> {
        match &self.kind {
            Kind::Cron(spec) => Some(spec),
            Kind::Every { .. } => None,
        }
    }

    pub(crate) fn effective_fold(&self) -> FoldPolicy {
        self.fold
    }

    pub(crate) fn runs_after_gap(&self) -> bool {
        self.run_after_gap
    }

    /// The civil time at instant `t` (in seconds) and the zone's offset then.
    fn civil_at(&self, t: i64) -> Option<(Civil, i64)> {
        let offset = match self.fixed_offset {
            Some(offset) => offset,
            None => i64::from(self.time_zone.to_offset(timestamp(t)?).seconds()),
        };
        Some((Civil::from_local_seconds(t + offset), offset))
    }

    /// How the time zone maps the civil time `c` to instants.
    fn resolve(&self, c: Civil) -> Option<Resolved> {
        let local = c.to_local_seconds();
        if let Some(offset) = self.fixed_offset {
            return Some(Resolved::Unique(local - offset));
        }
        let resolved = match self.time_zone.to_ambiguous_timestamp(c.to_jiff()?).offset() {
            AmbiguousOffset::Unambiguous { offset } => {
                Resolved::Unique(local - i64::from(offset.seconds()))
            }
            AmbiguousOffset::Gap { before, after } => {
                // `c` read with the later offset is an instant inside the gap, before the jump;
                // the first transition after it is the jump itself.
                let inside = timestamp(local - i64::from(after.seconds()))?;
                let end = self
                    .time_zone
                    .following(inside)
                    .next()?
                    .timestamp()
                    .as_second();
                Resolved::Gap {
                    end,
                    start_local: end + i64::from(before.seconds()),
                    end_local: end + i64::from(after.seconds()),
                }
            }
            AmbiguousOffset::Fold { before, after } => Resolved::Fold {
                first: local - i64::from(before.seconds()),
                second: local - i64::from(after.seconds()),
            },
        };
        Some(resolved)
    }

    /// The earliest instant at which the civil match `m` fires that is later than `t`, or, when
    /// it does not, the civil time to search on from. A skipped gap is passed over whole: a
    /// wildcard job whose times all fall in gaps would otherwise be resolved second by second.
    fn fire_of_match_after(&self, m: Civil, t: i64) -> Result<i64, Civil> {
        let next = || Civil::from_local_seconds(m.to_local_seconds() + 1);
        match self.resolve(m).ok_or_else(next)? {
            Resolved::Unique(i) if i > t => Ok(i),
            Resolved::Gap { end, .. } if self.run_after_gap && end > t => Ok(end),
            Resolved::Gap { end_local, .. } => Err(Civil::from_local_seconds(end_local)),
            Resolved::Fold { first, second } => {
                let takes_first = matches!(self.fold, FoldPolicy::First | FoldPolicy::Both);
                let takes_second = matches!(self.fold, FoldPolicy::Second | FoldPolicy::Both);
                if takes_first && first > t {
                    Ok(first)
                } else if takes_second && second > t {
                    Ok(second)
                } else {
                    Err(next())
                }
            }
            Resolved::Unique(_) => Err(next()),
        }
    }

    /// The latest instant at which the civil match `m` fires that is earlier than `t`, or, when
    /// it does not, the civil time to search back from.
    fn fire_of_match_before(&self, m: Civil, t: i64) -> Result<i64, Civil> {
        let prev = || Civil::from_local_seconds(m.to_local_seconds() - 1);
        match self.resolve(m).ok_or_else(prev)? {
            Resolved::Unique(i) if i < t => Ok(i),
            Resolved::Gap { end, .. } if self.run_after_gap && end < t => Ok(end),
            Resolved::Gap { start_local, .. } => Err(Civil::from_local_seconds(start_local - 1)),
            Resolved::Fold { first, second } => {
                let takes_first = matches!(self.fold, FoldPolicy::First | FoldPolicy::Both);
                let takes_second = matches!(self.fold, FoldPolicy::Second | FoldPolicy::Both);
                if takes_second && second < t {
                    Ok(second)
                } else if takes_first && first < t {
                    Ok(first)
                } else {
                    Err(prev())
                }
            }
            Resolved::Unique(_) => Err(prev()),
        }
    }

    /// [`Self::next_cron`] for the first-pass-only policy: with no second pass to come back
    /// to, each match is resolved on its own, which takes two lookups in all.
    fn next_cron_first_pass_only(&self, spec: &CronSpec, t: i64) -> Option<i64> {
        let (now, _) = self.civil_at(t)?;
        let mut from = now.succ();
        loop {
            match self.fire_of_match_after(spec.next_civil(from)?, t) {
                Ok(i) => return Some(i),
                Err(resume) => from = resume,
            }
        }
    }

    /// The zone's offset at `t` and its next change, from two lookups; every civil time until
    /// that change then converts to an instant by plain arithmetic.
    fn window_at(&self, t: i64) -> Option<OffsetWindow> {
        if let Some(offset) = self.fixed_offset {
            return Some(OffsetWindow {
                offset,
                until: i64::MAX,
                next_offset: offset,
            });
        }
        let at = timestamp(t)?;
        let offset = i64::from(self.time_zone.to_offset(at).seconds());
        Some(match self.time_zone.following(at).next() {
            Some(next) => OffsetWindow {
                offset,
                until: next.timestamp().as_second(),
                next_offset: i64::from(next.offset().seconds()),
            },
            None => OffsetWindow {
                offset,
                until: i64::MAX,
                next_offset: offset,
            },
        })
    }

    /// The first fire strictly after the instant `t` (seconds).
    ///
    /// Civil matches are visited in civil order. The earliest instant a match can fire at never
    /// decreases along that order (a gap maps to its end, a fold's first pass precedes the
    /// following times), so the first match with an instant after `t` gives the answer, with one
    /// exception handled first: when `t` lies in the first pass of a fold, times earlier on the
    /// wall clock than `t` still come round again in the second pass.
    fn next_cron(&self, spec: &CronSpec, t: i64) -> Option<i64> {
        if self.fold == FoldPolicy::First {
            return self.next_cron_first_pass_only(spec, t);
        }
        // Policies that take the second pass: the offset at `t` and the zone's next change
        // decide every match before that change (in a second pass, the offset at `t` is the
        // second pass's), so most calls need two lookups and no per-match resolution.
        let w = self.window_at(t)?;
        let now_local = t + w.offset;
        // Wall-clock times from here on are not ambiguous until the next change: before it if
        // the change is a gap, before the repeated interval starts if it is a fold.
        let plain_until = if w.next_offset < w.offset {
            w.until + w.next_offset
        } else {
            w.until.saturating_add(w.offset)
        };

        let mut best = None;
        let in_first_pass = w.next_offset < w.offset && now_local >= w.until + w.next_offset;
        if in_first_pass && matches!(self.fold, FoldPolicy::Second | FoldPolicy::Both) {
            // Matches from the fold's start up to now come round again in the second pass.
            let fold_start = Civil::from_local_seconds(w.until + w.next_offset);
            let now = Civil::from_local_seconds(now_local);
            best = spec
                .next_civil(fold_start)
                .filter(|m| *m <= now)
                .map(|m| m.to_local_seconds() - w.next_offset);
        }
        let mut from = Civil::from_local_seconds(now_local + 1);
        loop {
            let m = spec.next_civil(from)?;
            let local = m.to_local_seconds();
            let fire = if local < plain_until {
                Ok(local - w.offset)
            } else {
                self.fire_of_match_after(m, t)
            };
            match (fire, best) {
                (Ok(i), _) => return Some(best.map_or(i, |b: i64| b.min(i))),
                // A later match cannot fire before this fold's second pass ends.
                (Err(_), Some(b)) => return Some(b),
                (Err(resume), None) => from = resume,
            }
        }
    }

    /// The last fire strictly before the instant `t` (seconds); the mirror of [`Self::next_cron`].
    fn prev_cron(&self, spec: &CronSpec, t: i64) -> Option<i64> {
        // `t` itself is a candidate here: callers pass the last second that may fire.
        let t = t + 1;
        let (now, offset) = self.civil_at(t - 1)?;
        let mut best = None;
        if self.fixed_offset.is_none() && matches!(self.fold, FoldPolicy::First | FoldPolicy::Both)
        {
            best = self.first_pass_fire_after_wall_clock(spec, t - 1, now, offset);
        }
        let mut upto = now;
        loop {
            match (self.fire_of_match_before(spec.prev_civil(upto)?, t), best) {
                (Ok(i), _) => return Some(best.map_or(i, |b: i64| b.max(i))),
                (Err(_), Some(b)) => return Some(b),
                (Err(resume), None) => upto = resume,
            }
        }
    }

    /// When `t` (civil `now`) lies in the second pass of a fold: the first-pass instant of the
    /// latest match after `now` and before the fold's end.
    fn first_pass_fire_after_wall_clock(
        &self,
        spec: &CronSpec,
        t: i64,
        now: Civil,
        offset: i64,
    ) -> Option<i64> {
        let last = self.time_zone.preceding(timestamp(t + 1)?).next()?;
        let jump = last.timestamp().as_second();
        let before = i64::from(self.time_zone.to_offset(timestamp(jump - 1)?).seconds());
        // A fold: clocks went back at `jump`, and `now` is still inside the repeated interval.
        if before <= offset || now.to_local_seconds() >= jump + before {
            return None;
        }
        let fold_end = Civil::from_local_seconds(jump + before - 1);
        let m = spec.prev_civil(fold_end)?;
        (m > now).then(|| m.to_local_seconds() - before)
    }
}

/// An iterator over fire instants, from [`Schedule::fires_after`] or [`Schedule::fires_in`].
#[derive(Clone, Debug)]
pub struct Fires<'a> {
    schedule: &'a Schedule,
    cursor: Option<Timestamp>,
    end: Option<Timestamp>,
}

impl Iterator for Fires<'_> {
    type Item = Timestamp;

    fn next(&mut self) -> Option<Timestamp> {
        let next = self.schedule.next_after(self.cursor?);
        self.cursor = next;
        match (next, self.end) {
            (Some(n), Some(end)) if n >= end => {
                self.cursor = None;
                None
            }
            _ => next,
        }
    }
}
