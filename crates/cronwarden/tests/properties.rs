//! Property tests for the schedule engine.
//!
//! Cron expressions are generated *structurally*: each field is a random list of items (a value,
//! a range `a-b`, a stepped range `a-b/s`, `*/s`, `N/s` or `*`), rendered to text (sometimes with
//! month and weekday names, in any case, and with weekday 7 for Sunday) and, independently of the
//! library, turned into the set of values each field allows. A [`Model`] built from that
//! structure decides which wall-clock seconds match, using Vixie cron's day rule (day-of-month OR
//! day-of-week when neither field starts with `*`, AND otherwise), and the daylight-saving rules
//! are applied to it explicitly. The library's answers are then compared with scans of the
//! timeline, second by second, and checked for consistency between `next_after`, `prev_before`,
//! `fires_after` and `fires_in`.
//!
//! Calendar arithmetic in the model goes through `jiff` (dates and weekdays) and the zone's
//! transitions as `jiff` reports them; nothing here uses the library's own civil-time code.

use std::sync::OnceLock;

use cronwarden::schedule::{DstPolicy, FoldPolicy, GapPolicy, Schedule, ScheduleOptions};
use jiff::civil::{Date, DateTime};
use jiff::tz::{AmbiguousOffset, TimeZone};
use jiff::{SignedDuration, Timestamp, ToSpan};
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;

const MINUTE: i64 = 60;
const HOUR: i64 = 3_600;
const DAY: i64 = 86_400;
/// 2000-01-01T00:00:00Z.
const Y2000: i64 = 946_684_800;
/// 2040-01-01T00:00:00Z.
const Y2040: i64 = 2_208_988_800;

fn config(cases: u32) -> ProptestConfig {
    ProptestConfig {
        cases,
        // Do not write regression files next to the tests; a failure prints its minimal case.
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

fn ts(seconds: i64) -> Timestamp {
    Timestamp::from_second(seconds).expect("an instant in jiff's range")
}

fn nanos(n: i64) -> SignedDuration {
    SignedDuration::from_nanos(n)
}

/// The date `day` days after 1970-01-01.
fn date_of_day(day: i64) -> Date {
    jiff::civil::date(1970, 1, 1)
        .checked_add(day.days())
        .expect("a date in jiff's range")
}

/// The smallest whole second at or after `t`.
fn ceil_second(t: Timestamp) -> i64 {
    let s = t.as_second();
    if t.subsec_nanosecond() > 0 {
        s + 1
    } else {
        s
    }
}

/// The largest whole second strictly before `t`.
fn last_second_before(t: Timestamp) -> i64 {
    let s = t.as_second();
    if t.subsec_nanosecond() > 0 {
        s
    } else {
        s - 1
    }
}

fn show(t: i64) -> String {
    ts(t).to_string()
}

fn show_in(t: i64, tz: &TimeZone) -> String {
    ts(t)
        .to_zoned(tz.clone())
        .strftime("%Y-%m-%dT%H:%M:%S%:z")
        .to_string()
}

// ---------------------------------------------------------------------------------------------
// Expressions, generated structurally
// ---------------------------------------------------------------------------------------------

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Second,
    Minute,
    Hour,
    DayOfMonth,
    Month,
    DayOfWeek,
}

const MONTH_NAMES: [&str; 12] = [
    "JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC",
];
const WEEKDAY_NAMES: [&str; 7] = ["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"];

impl Kind {
    fn min(self) -> u32 {
        match self {
            Kind::DayOfMonth | Kind::Month => 1,
            _ => 0,
        }
    }

    fn max(self) -> u32 {
        match self {
            Kind::Second | Kind::Minute => 59,
            Kind::Hour => 23,
            Kind::DayOfMonth => 31,
            Kind::Month => 12,
            // 0 and 7 are both Sunday.
            Kind::DayOfWeek => 7,
        }
    }

    fn name(self, value: u32) -> Option<&'static str> {
        match self {
            Kind::Month => MONTH_NAMES.get(value as usize - 1).copied(),
            Kind::DayOfWeek => WEEKDAY_NAMES.get(value as usize).copied(),
            _ => None,
        }
    }

    fn has_names(self) -> bool {
        matches!(self, Kind::Month | Kind::DayOfWeek)
    }
}

/// One item of a field's comma-separated list.
#[derive(Clone, Debug)]
enum Item {
    Star,
    /// `*/s`
    StarStep(u32),
    /// `v`
    Single(u32),
    /// `a-b`
    Range(u32, u32),
    /// `a-b/s`
    RangeStep(u32, u32, u32),
    /// `n/s`, meaning `n-max/s`
    StartStep(u32, u32),
}

#[derive(Clone, Copy, Debug)]
enum Case {
    Upper,
    Lower,
    Title,
}

#[derive(Clone, Debug)]
struct Field {
    kind: Kind,
    items: Vec<Item>,
    /// Write values that have names (months, weekdays 0-6) as names, in this case.
    names: Option<Case>,
}

impl Field {
    fn value_text(&self, v: u32) -> String {
        match (self.names, self.kind.name(v)) {
            (Some(case), Some(name)) => match case {
                Case::Upper => name.to_owned(),
                Case::Lower => name.to_ascii_lowercase(),
                Case::Title => name[..1].to_owned() + &name[1..].to_ascii_lowercase(),
            },
            _ => v.to_string(),
        }
    }

    fn render(&self) -> String {
        let items: Vec<String> = self
            .items
            .iter()
            .map(|item| match *item {
                Item::Star => "*".to_owned(),
                Item::StarStep(s) => format!("*/{s}"),
                Item::Single(v) => self.value_text(v),
                Item::Range(a, b) => format!("{}-{}", self.value_text(a), self.value_text(b)),
                Item::RangeStep(a, b, s) => {
                    format!("{}-{}/{s}", self.value_text(a), self.value_text(b))
                }
                Item::StartStep(n, s) => format!("{}/{s}", self.value_text(n)),
            })
            .collect();
        items.join(",")
    }

    /// The values the field allows, as bits (weekday 7 folded into 0).
    fn allowed(&self) -> u64 {
        let (min, max) = (self.kind.min(), self.kind.max());
        let mut bits = 0u64;
        for item in &self.items {
            let (low, high, step) = match *item {
                Item::Star => (min, max, 1),
                Item::StarStep(s) => (min, max, s),
                Item::Single(v) => (v, v, 1),
                Item::Range(a, b) => (a, b, 1),
                Item::RangeStep(a, b, s) => (a, b, s),
                Item::StartStep(n, s) => (n, max, s),
            };
            for v in (low..=high).step_by(step as usize) {
                bits |= 1 << v;
            }
        }
        if self.kind == Kind::DayOfWeek && bits & (1 << 7) != 0 {
            bits = (bits & !(1 << 7)) | 1;
        }
        bits
    }

    /// Whether the field's text starts with `*` (Vixie cron looks at the first character).
    fn starts_with_star(&self) -> bool {
        matches!(self.items[0], Item::Star | Item::StarStep(_))
    }
}

#[derive(Clone, Debug)]
struct Expr {
    /// `Some` for a 6-field expression.
    second: Option<Field>,
    minute: Field,
    hour: Field,
    day_of_month: Field,
    month: Field,
    day_of_week: Field,
}

impl Expr {
    fn render(&self) -> String {
        let mut fields: Vec<String> = Vec::with_capacity(6);
        if let Some(second) = &self.second {
            fields.push(second.render());
        }
        for f in [
            &self.minute,
            &self.hour,
            &self.day_of_month,
            &self.month,
            &self.day_of_week,
        ] {
            fields.push(f.render());
        }
        fields.join(" ")
    }

    fn model(&self) -> Model {
        Model {
            seconds: self.second.as_ref().map_or(1, Field::allowed),
            minutes: self.minute.allowed(),
            hours: self.hour.allowed(),
            days_of_month: self.day_of_month.allowed(),
            months: self.month.allowed(),
            days_of_week: self.day_of_week.allowed(),
            either_day: !self.day_of_month.starts_with_star()
                && !self.day_of_week.starts_with_star(),
            wildcard: self.second.as_ref().is_some_and(Field::starts_with_star)
                || self.minute.starts_with_star()
                || self.hour.starts_with_star(),
        }
    }
}

/// How the generator leans.
#[derive(Clone, Copy, Debug)]
enum Profile {
    /// Any expression, leaning towards ones that fire within a few days.
    General,
    /// Times of day around the hours zones change their clocks at, day fields mostly `*`.
    NearTransitions,
}

fn item_strategy(kind: Kind, values: BoxedStrategy<u32>) -> BoxedStrategy<Item> {
    let span = kind.max() - kind.min() + 1;
    let step = prop_oneof![3 => 1..=span.min(6), 1 => 1..=span].boxed();
    prop_oneof![
        4 => values.clone().prop_map(Item::Single),
        2 => (values.clone(), values.clone()).prop_map(|(a, b)| Item::Range(a.min(b), a.max(b))),
        2 => (values.clone(), values.clone(), step.clone())
            .prop_map(|(a, b, s)| Item::RangeStep(a.min(b), a.max(b), s)),
        1 => step.clone().prop_map(Item::StarStep),
        1 => (values, step).prop_map(|(n, s)| Item::StartStep(n, s)),
        1 => Just(Item::Star),
    ]
    .boxed()
}

/// A field that is a lone `*` with weight `star` (against 10 for a random list).
fn field_strategy(kind: Kind, star: u32, values: BoxedStrategy<u32>) -> BoxedStrategy<Field> {
    let items = prop_oneof![
        star => Just(vec![Item::Star]),
        10 => prop::collection::vec(item_strategy(kind, values), 1..=3),
    ];
    let names = if kind.has_names() {
        prop_oneof![
            2 => Just(None),
            1 => prop_oneof![Just(Case::Upper), Just(Case::Lower), Just(Case::Title)].prop_map(Some),
        ]
        .boxed()
    } else {
        Just(None).boxed()
    };
    (items, names)
        .prop_map(move |(items, names)| Field { kind, items, names })
        .boxed()
}

fn plain_values(kind: Kind) -> BoxedStrategy<u32> {
    (kind.min()..=kind.max()).boxed()
}

fn expr_strategy(profile: Profile) -> BoxedStrategy<Expr> {
    let (hour_values, hour_star, day_star, month_star) = match profile {
        Profile::General => (plain_values(Kind::Hour), 3, 10, 15),
        Profile::NearTransitions => (
            // Zones change clocks around 00:00-03:45 (Santiago at midnight, Chatham at 02:45).
            prop_oneof![
                1 => plain_values(Kind::Hour),
                3 => prop::sample::select(vec![23u32, 0, 1, 2, 3]),
            ]
            .boxed(),
            3,
            25,
            30,
        ),
    };
    (
        prop::option::of(field_strategy(Kind::Second, 2, plain_values(Kind::Second))),
        field_strategy(Kind::Minute, 2, plain_values(Kind::Minute)),
        field_strategy(Kind::Hour, hour_star, hour_values),
        field_strategy(Kind::DayOfMonth, day_star, plain_values(Kind::DayOfMonth)),
        field_strategy(Kind::Month, month_star, plain_values(Kind::Month)),
        field_strategy(Kind::DayOfWeek, day_star, plain_values(Kind::DayOfWeek)),
    )
        .prop_map(
            |(second, minute, hour, day_of_month, month, day_of_week)| Expr {
                second,
                minute,
                hour,
                day_of_month,
                month,
                day_of_week,
            },
        )
        .boxed()
}

fn any_expr() -> BoxedStrategy<Expr> {
    prop_oneof![
        expr_strategy(Profile::General),
        expr_strategy(Profile::NearTransitions),
    ]
    .boxed()
}

fn policy_strategy() -> impl Strategy<Value = DstPolicy> {
    (
        prop_oneof![
            2 => Just(GapPolicy::Cron),
            1 => Just(GapPolicy::RunAfterGap),
            1 => Just(GapPolicy::Skip),
        ],
        prop_oneof![
            2 => Just(FoldPolicy::Cron),
            1 => Just(FoldPolicy::First),
            1 => Just(FoldPolicy::Second),
            1 => Just(FoldPolicy::Both),
        ],
    )
        .prop_map(|(gap, fold)| DstPolicy { gap, fold })
}

// ---------------------------------------------------------------------------------------------
// The independent model
// ---------------------------------------------------------------------------------------------

/// Which wall-clock seconds an expression matches, computed from its structure.
#[derive(Clone, Debug)]
struct Model {
    seconds: u64,
    minutes: u64,
    hours: u64,
    days_of_month: u64,
    months: u64,
    /// Bits 0-6, 0 = Sunday.
    days_of_week: u64,
    /// Neither day field starts with `*`: a day matches if either day field does.
    either_day: bool,
    /// The second, minute or hour field starts with `*`.
    wildcard: bool,
}

fn bit(bits: u64, n: impl Into<i64>) -> bool {
    bits & (1 << n.into()) != 0
}

impl Model {
    fn day_matches(&self, date: Date) -> bool {
        self.day_matches_parts(
            date.month(),
            date.day(),
            date.weekday().to_sunday_zero_offset(),
        )
    }

    /// Whether day `day` of `month`, a `weekday` (0 = Sunday), matches.
    fn day_matches_parts(&self, month: i8, day: i8, weekday: i8) -> bool {
        if !bit(self.months, month) {
            return false;
        }
        let dom = bit(self.days_of_month, day);
        let dow = bit(self.days_of_week, weekday);
        if self.either_day {
            dom || dow
        } else {
            dom && dow
        }
    }

    /// Whether the time of day `second_of_day` (0..86400) matches.
    fn time_matches(&self, second_of_day: i64) -> bool {
        bit(self.seconds, second_of_day % 60)
            && bit(self.minutes, second_of_day / 60 % 60)
            && bit(self.hours, second_of_day / 3600)
    }

    /// Whether the local (wall-clock) second `local`, counted from 1970-01-01T00:00:00, matches.
    fn local_matches(&self, local: i64) -> bool {
        self.time_matches(local.rem_euclid(DAY))
            && self.day_matches(date_of_day(local.div_euclid(DAY)))
    }

    /// Whether each second of the day (0..86400) matches the second, minute and hour fields.
    fn time_table(&self) -> Vec<bool> {
        let mut table = vec![false; DAY as usize];
        for h in (0..24).filter(|&h| bit(self.hours, h)) {
            for m in (0..60).filter(|&m| bit(self.minutes, m)) {
                for s in (0..60).filter(|&s| bit(self.seconds, s)) {
                    table[(h * 3600 + m * 60 + s) as usize] = true;
                }
            }
        }
        table
    }

    /// The fires in one day (away from DST changes).
    fn per_day(&self) -> i64 {
        i64::from(self.seconds.count_ones() * self.minutes.count_ones() * self.hours.count_ones())
    }

    /// Whether any day ever matches. The weekday and leap-year pattern repeats every 28 years
    /// between 1901 and 2099, so 2001-2028 covers every case.
    fn can_fire(&self) -> bool {
        (2001..=2028).any(|year| {
            (1..=12).any(|month| {
                let first = jiff::civil::date(year, month, 1);
                let weekday = first.weekday().to_sunday_zero_offset();
                (1..=first.days_in_month())
                    .any(|day| self.day_matches_parts(month, day, (weekday + day - 1) % 7))
            })
        })
    }

    /// The DST rules for this expression under `policy`.
    fn rules(&self, policy: DstPolicy) -> Rules {
        let run_after_gap = match policy.gap {
            GapPolicy::Cron => !self.wildcard,
            GapPolicy::RunAfterGap => true,
            GapPolicy::Skip => false,
        };
        let fold = match policy.fold {
            FoldPolicy::Cron if self.wildcard => FoldPolicy::Both,
            FoldPolicy::Cron => FoldPolicy::First,
            other => other,
        };
        Rules {
            run_after_gap,
            first_pass: matches!(fold, FoldPolicy::First | FoldPolicy::Both),
            second_pass: matches!(fold, FoldPolicy::Second | FoldPolicy::Both),
        }
    }

    /// The longest window (in seconds) worth scanning: short for expressions that fire many
    /// times a day, so that a case stays fast, and at most `cap`.
    fn window_cap(&self, cap: i64, fires: i64) -> i64 {
        (fires * DAY / self.per_day()).clamp(HOUR, cap)
    }
}

/// The DST rules resolved for one expression.
#[derive(Clone, Copy, Debug)]
struct Rules {
    /// A wall-clock match skipped by a gap fires at the gap's end.
    run_after_gap: bool,
    /// A repeated wall-clock match fires in the first pass.
    first_pass: bool,
    /// ... and/or in the second.
    second_pass: bool,
}

/// Walks wall-clock seconds forward from a starting one, knowing whether each matches.
struct Walker<'a> {
    model: &'a Model,
    /// Whether each second of the day (0..86400) matches the time fields.
    times: &'a [bool],
    day: i64,
    second_of_day: i64,
    day_ok: bool,
}

impl<'a> Walker<'a> {
    fn new(model: &'a Model, times: &'a [bool], local: i64) -> Self {
        let day = local.div_euclid(DAY);
        Walker {
            model,
            times,
            day,
            second_of_day: local.rem_euclid(DAY),
            day_ok: model.day_matches(date_of_day(day)),
        }
    }

    fn matches(&self) -> bool {
        self.day_ok && self.times[self.second_of_day as usize]
    }

    fn advance(&mut self, seconds: i64) {
        self.second_of_day += seconds;
        while self.second_of_day >= DAY {
            self.second_of_day -= DAY;
            self.day += 1;
            self.day_ok = self.model.day_matches(date_of_day(self.day));
        }
    }
}

/// Brute force in UTC: every instant `t` in `first..=last` stepping by `step` seconds (from
/// `first`) whose UTC wall clock matches.
fn brute_force_utc(model: &Model, first: i64, last: i64, step: i64) -> Vec<i64> {
    let times = model.time_table();
    let mut walk = Walker::new(model, &times, first);
    let mut fires = Vec::new();
    let mut t = first;
    while t <= last {
        if walk.matches() {
            fires.push(t);
        }
        t += step;
        walk.advance(step);
    }
    fires
}

/// A stretch of time with one UTC offset, between two of the zone's transitions.
#[derive(Debug)]
struct Segment {
    /// The first instant: a transition (or where the scan starts, in a zone without any).
    start: i64,
    /// The instant after the last: the next transition (or past where the scan ends).
    end: i64,
    offset: i64,
    /// The offset before `start` and after `end`.
    prev_offset: i64,
    next_offset: i64,
}

/// The zone's constant-offset stretches covering `from..=to`, as `jiff` reports its transitions.
fn segments(tz: &TimeZone, from: i64, to: i64) -> Vec<Segment> {
    let offset_at = |t: i64| i64::from(tz.to_offset(ts(t)).seconds());
    // Start at the last transition at or before `from` and end at the first after `to`, so that
    // the segments covering `from..=to` are whole (where the zone has transitions at all).
    let (mut start, mut prev) = match tz.preceding(ts(from + 1)).next() {
        Some(transition) => {
            let at = transition.timestamp().as_second();
            (at, offset_at(at - 1))
        }
        None => (from, offset_at(from)),
    };
    let mut offset = offset_at(start);
    let mut out = Vec::new();
    for transition in tz.following(ts(start)) {
        let at = transition.timestamp().as_second();
        let next = i64::from(transition.offset().seconds());
        out.push(Segment {
            start,
            end: at,
            offset,
            prev_offset: prev,
            next_offset: next,
        });
        (start, prev, offset) = (at, offset, next);
        if at > to {
            return out;
        }
    }
    out.push(Segment {
        start,
        end: to + 1,
        offset,
        prev_offset: prev,
        next_offset: offset,
    });
    out
}

/// Where an instant's wall-clock time falls.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Pass {
    Unique,
    /// The wall-clock time happens again later (clocks will be set back).
    First,
    /// The wall-clock time already happened (clocks were set back).
    Second,
}

impl Segment {
    /// Where the wall-clock time of `t` (in this segment) falls: after a transition that set
    /// clocks back by `d`, the first `d` seconds repeat wall-clock times (second pass); before a
    /// transition that sets them back by `d`, the last `d` seconds are the first pass.
    fn pass(&self, t: i64) -> Pass {
        if self.prev_offset > self.offset && t < self.start + (self.prev_offset - self.offset) {
            Pass::Second
        } else if self.next_offset < self.offset && t >= self.end - (self.offset - self.next_offset)
        {
            Pass::First
        } else {
            Pass::Unique
        }
    }

    /// Cross-checks [`Segment::pass`], the offset and the gap at `start` against `jiff` at the
    /// instants where they change (the model is constant between them).
    fn check_against_jiff(&self, tz: &TimeZone) -> Result<(), TestCaseError> {
        let mut probes = vec![self.start, self.end - 1];
        for d in [self.prev_offset - self.offset, 0] {
            probes.extend([d - 1, d, d + 1].map(|k| self.start + k));
        }
        for d in [self.offset - self.next_offset, 0] {
            probes.extend([d - 1, d, d + 1].map(|k| self.end - k));
        }
        for t in probes
            .into_iter()
            .filter(|t| (self.start..self.end).contains(t))
        {
            prop_assert_eq!(i64::from(tz.to_offset(ts(t)).seconds()), self.offset);
            let local = t + self.offset;
            let wall = local_datetime(local);
            prop_assert_eq!(ts(t).to_zoned(tz.clone()).datetime(), wall);
            let jiff_pass = match tz.to_ambiguous_timestamp(wall).offset() {
                AmbiguousOffset::Unambiguous { .. } => Pass::Unique,
                AmbiguousOffset::Fold { before, .. }
                    if local - i64::from(before.seconds()) == t =>
                {
                    Pass::First
                }
                AmbiguousOffset::Fold { .. } => Pass::Second,
                AmbiguousOffset::Gap { .. } => {
                    return Err(TestCaseError::fail(format!("{wall} exists at {}", show(t))))
                }
            };
            prop_assert_eq!(self.pass(t), jiff_pass, "pass of {} ({})", show(t), wall);
        }
        if self.prev_offset < self.offset {
            // The wall-clock times from the old offset's reading of `start` to the new one's
            // are skipped, and no others around them.
            let (from, to) = (self.start + self.prev_offset, self.start + self.offset);
            for (local, skipped) in [(from - 1, false), (from, true), (to - 1, true), (to, false)] {
                let wall = local_datetime(local);
                let gap = matches!(
                    tz.to_ambiguous_timestamp(wall).offset(),
                    AmbiguousOffset::Gap { .. }
                );
                prop_assert_eq!(gap, skipped, "{} in a gap", wall);
            }
        }
        Ok(())
    }
}

/// Brute force in a zone: scans the instants `first..=last` second by second and applies the
/// DST rules explicitly.
///
/// - An instant fires if its wall-clock time matches and either that time happens only once, or
///   it is the first of two and the rules take the first pass, or the second of two and they
///   take the second ([`Segment::pass`]).
/// - A clock jump forward at instant `T` skips the wall-clock times from the old offset's reading
///   of `T` up to the new one's; if one of them matches and the rules run after a gap, `T` fires.
fn brute_force_zoned(
    model: &Model,
    rules: Rules,
    tz: &TimeZone,
    first: i64,
    last: i64,
) -> Result<Vec<i64>, TestCaseError> {
    let times = model.time_table();
    let mut fires = Vec::new();
    for seg in segments(tz, first - 2 * DAY, last + 2 * DAY) {
        let (lo, hi) = (seg.start.max(first), (seg.end - 1).min(last));
        if lo > hi {
            continue;
        }
        seg.check_against_jiff(tz)?;
        let mut walk = Walker::new(model, &times, lo + seg.offset);
        for t in lo..=hi {
            if walk.matches() {
                let fires_here = match seg.pass(t) {
                    Pass::Unique => true,
                    Pass::First => rules.first_pass,
                    Pass::Second => rules.second_pass,
                };
                if fires_here {
                    fires.push(t);
                }
            }
            walk.advance(1);
        }
        // A jump forward at `seg.start`.
        if seg.prev_offset < seg.offset
            && rules.run_after_gap
            && (first..=last).contains(&seg.start)
            && (seg.start + seg.prev_offset..seg.start + seg.offset).any(|l| model.local_matches(l))
        {
            fires.push(seg.start);
        }
    }
    fires.sort_unstable();
    fires.dedup();
    Ok(fires)
}

fn local_datetime(local: i64) -> DateTime {
    let sod = local.rem_euclid(DAY);
    date_of_day(local.div_euclid(DAY)).at(
        (sod / 3600) as i8,
        (sod / 60 % 60) as i8,
        (sod % 60) as i8,
        0,
    )
}

/// Why the instant `f` is a fire of `model` under `rules` in `tz`, or an error saying it is not.
fn check_fire_is_explained(
    model: &Model,
    rules: Rules,
    tz: &TimeZone,
    f: Timestamp,
) -> Result<(), TestCaseError> {
    prop_assert_eq!(f.subsec_nanosecond(), 0, "fires are whole seconds");
    let t = f.as_second();
    let offset = i64::from(tz.to_offset(f).seconds());
    let local = t + offset;
    if model.local_matches(local) {
        let wall = local_datetime(local);
        if let AmbiguousOffset::Fold { before, after } = tz.to_ambiguous_timestamp(wall).offset() {
            if offset == i64::from(before.seconds()) {
                prop_assert!(
                    rules.first_pass,
                    "{} fires in a fold's first pass",
                    show_in(t, tz)
                );
            } else {
                prop_assert_eq!(offset, i64::from(after.seconds()));
                prop_assert!(
                    rules.second_pass,
                    "{} fires in a fold's second pass",
                    show_in(t, tz)
                );
            }
        }
        return Ok(());
    }
    // Not a wall-clock match: it must be the end of a gap that skipped one.
    let before = i64::from(tz.to_offset(ts(t - 1)).seconds());
    prop_assert!(
        before < offset,
        "{} does not match and does not end a gap",
        show_in(t, tz)
    );
    prop_assert!(
        rules.run_after_gap,
        "{} ends a gap but the rules skip gaps",
        show_in(t, tz)
    );
    prop_assert!(
        (t + before..t + offset).any(|l| model.local_matches(l)),
        "{} ends a gap that skipped no match",
        show_in(t, tz)
    );
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Zones and start instants
// ---------------------------------------------------------------------------------------------

const ZONE_NAMES: [&str; 8] = [
    "UTC",
    "America/New_York",
    "Europe/Berlin",
    "Australia/Lord_Howe",
    "Asia/Kolkata",
    "Pacific/Chatham",
    "America/Santiago",
    "Asia/Tehran",
];

/// The zones with daylight-saving time through 2000-2040 (and beyond).
const DST_ZONE_NAMES: [&str; 5] = [
    "Europe/Berlin",
    "America/New_York",
    "Australia/Lord_Howe",
    "Pacific/Chatham",
    "America/Santiago",
];

fn zones() -> &'static [(&'static str, TimeZone)] {
    static ZONES: OnceLock<Vec<(&'static str, TimeZone)>> = OnceLock::new();
    ZONES.get_or_init(|| {
        ZONE_NAMES
            .iter()
            .filter_map(|&name| TimeZone::get(name).ok().map(|tz| (name, tz)))
            .collect()
    })
}

fn dst_zones() -> &'static [(&'static str, TimeZone)] {
    static ZONES: OnceLock<Vec<(&'static str, TimeZone)>> = OnceLock::new();
    ZONES.get_or_init(|| {
        DST_ZONE_NAMES
            .iter()
            .map(|&name| {
                (
                    name,
                    TimeZone::get(name).expect("a zone in the bundled database"),
                )
            })
            .collect()
    })
}

#[test]
fn the_zones_exist() {
    // Only Asia/Tehran is optional; the others are needed for the properties to mean anything.
    assert!(
        zones().len() >= 7,
        "{:?}",
        zones().iter().map(|z| z.0).collect::<Vec<_>>()
    );
    assert_eq!(dst_zones().len(), 5);
}

/// A start instant: anywhere in 2000-2040, or within 30 hours of the zone's next transition.
#[derive(Clone, Debug)]
struct Start {
    base: i64,
    near_transition: bool,
    delta: i64,
    nanos: i64,
}

impl Start {
    fn instant(&self, tz: &TimeZone) -> Timestamp {
        let mut t = self.base;
        if self.near_transition {
            if let Some(transition) = tz.following(ts(self.base)).next() {
                t = transition.timestamp().as_second() + self.delta;
            }
        }
        ts(t) + nanos(self.nanos)
    }
}

fn start_strategy() -> impl Strategy<Value = Start> {
    let delta = prop_oneof![
        2 => -30 * HOUR..=30 * HOUR,
        // In or around the gap or fold itself.
        2 => -2 * HOUR..=2 * HOUR,
        // Right at the edges of a gap or fold (whole quarter hours around the transition).
        2 => (-12i64..=12, -1i64..=1).prop_map(|(q, d)| q * 900 + d),
    ];
    let nanos = prop_oneof![3 => Just(0i64), 1 => 1i64..1_000_000_000];
    (Y2000..Y2040, any::<bool>(), delta, nanos).prop_map(|(base, near, delta, nanos)| Start {
        base,
        near_transition: near,
        delta,
        nanos,
    })
}

/// Parses `expr` with these options, or checks that the model agrees that it never fires.
/// `Ok(None)`: a correctly rejected expression.
fn parse(
    expr: &Expr,
    model: &Model,
    options: ScheduleOptions,
) -> Result<Option<Schedule>, TestCaseError> {
    let text = expr.render();
    let can_fire = model.can_fire();
    match options.parse(&text) {
        Ok(schedule) => {
            prop_assert!(can_fire, "{:?} parsed but never fires", text);
            prop_assert_eq!(
                schedule.is_wildcard(),
                model.wildcard,
                "is_wildcard of {:?}",
                text
            );
            Ok(Some(schedule))
        }
        Err(e) => {
            prop_assert!(!can_fire, "{:?} fires but was rejected: {}", text, e);
            Ok(None)
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Properties
// ---------------------------------------------------------------------------------------------

proptest! {
    #![proptest_config(config(128))]

    /// In UTC, `fires_in` over a window gives exactly the instants a brute-force scan of the
    /// window finds. 6-field expressions are scanned second by second over up to 2 days.
    /// 5-field ones are scanned second by second over up to 2 days and also minute by minute
    /// over up to 3 weeks: their seconds field is implicitly `0`, so no instant with a nonzero
    /// second can match in UTC, and the minute scan visits every instant with second 0.
    #[test]
    fn utc_fires_equal_brute_force(
        expr in expr_strategy(Profile::General),
        policy in policy_strategy(),
        start in Y2000..Y2040,
        start_nanos in prop_oneof![3 => Just(0i64), 1 => 1i64..1_000_000_000],
        window_fraction in 1u32..=1000,
        minute_window_fraction in 1u32..=1000,
    ) {
        let model = expr.model();
        let text = expr.render();
        let Some(schedule) = parse(&expr, &model, ScheduleOptions::new().dst_policy(policy))? else {
            return Ok(());
        };
        let start = ts(start) + nanos(start_nanos);

        let mut windows = vec![(
            model.window_cap(2 * DAY, 2000) * i64::from(window_fraction) / 1000,
            1,
        )];
        if expr.second.is_none() {
            windows.push((
                model.window_cap(21 * DAY, 1500) * i64::from(minute_window_fraction) / 1000,
                MINUTE,
            ));
        }
        for (length, step) in windows {
            let end = start + SignedDuration::from_secs(length.max(1));
            let mut first = ceil_second(start);
            if step == MINUTE {
                first = (first + MINUTE - 1).div_euclid(MINUTE) * MINUTE;
            }
            let expected = brute_force_utc(&model, first, last_second_before(end), step);
            let got: Vec<i64> = schedule.fires_in(start..end).map(|t| {
                assert_eq!(t.subsec_nanosecond(), 0);
                t.as_second()
            }).collect();
            prop_assert_eq!(
                got.iter().map(|&t| show(t)).collect::<Vec<_>>(),
                expected.iter().map(|&t| show(t)).collect::<Vec<_>>(),
                "{:?} in {}..{} (scan step {}s)", text, start, end, step
            );
            if expected.is_empty() {
                let next = schedule.next_after(start);
                prop_assert!(next.is_some_and(|n| n >= end), "{:?}: next_after({}) = {:?}", text, start, next);
            }
        }
    }
}

proptest! {
    #![proptest_config(config(256))]

    /// In any zone and under any DST policy, fires come strictly after the instant asked
    /// about and strictly increase, through gaps and folds.
    #[test]
    fn fires_strictly_increase_after_start(
        expr in any_expr(),
        policy in policy_strategy(),
        zone in 0..ZONE_NAMES.len(),
        start in start_strategy(),
    ) {
        let (name, tz) = &zones()[zone % zones().len()];
        let model = expr.model();
        let text = expr.render();
        let options = ScheduleOptions::new().time_zone(tz.clone()).dst_policy(policy);
        let Some(schedule) = parse(&expr, &model, options)? else {
            return Ok(());
        };
        let start = start.instant(tz);
        let fires: Vec<Timestamp> = schedule.fires_after(start).take(20).collect();
        prop_assert_eq!(fires.len(), 20, "{:?} in {} after {}", text, name, start);
        let mut previous = start;
        for f in fires {
            prop_assert!(
                f > previous,
                "{:?} in {} ({:?}) after {}: {} follows {}",
                text, name, policy, start, f, previous
            );
            previous = f;
        }
    }

    /// Every fire is explained by the rules: its wall-clock time matches the expression (and,
    /// if that time happens twice, the fire is in a pass the policy takes), or it is the end of
    /// a clock jump that skipped a matching time and the policy runs after gaps.
    #[test]
    fn every_fire_is_a_match_or_a_gap_end(
        expr in any_expr(),
        policy in policy_strategy(),
        zone in 0..ZONE_NAMES.len(),
        start in start_strategy(),
    ) {
        let (name, tz) = &zones()[zone % zones().len()];
        let model = expr.model();
        let rules = model.rules(policy);
        let text = expr.render();
        let options = ScheduleOptions::new().time_zone(tz.clone()).dst_policy(policy);
        let Some(schedule) = parse(&expr, &model, options)? else {
            return Ok(());
        };
        let start = start.instant(tz);
        for f in schedule.fires_after(start).take(20) {
            check_fire_is_explained(&model, rules, tz, f).map_err(|e| {
                TestCaseError::fail(format!("{text:?} in {name} ({policy:?}) after {start}: {e}"))
            })?;
        }
    }

    /// `next_after` and `prev_before` describe the same set of fires: with `f` the first fire
    /// after `t` and `q` the last before it, nothing fires strictly between `q` and `t` or
    /// between `t` and `f`, and each finds the other.
    #[test]
    fn prev_and_next_round_trip(
        expr in any_expr(),
        policy in policy_strategy(),
        zone in 0..ZONE_NAMES.len(),
        start in start_strategy(),
    ) {
        let (name, tz) = &zones()[zone % zones().len()];
        let model = expr.model();
        let text = expr.render();
        let options = ScheduleOptions::new().time_zone(tz.clone()).dst_policy(policy);
        let Some(s) = parse(&expr, &model, options)? else {
            return Ok(());
        };
        let t = start.instant(tz);
        let ctx = format!("{text:?} in {name} ({policy:?}) at {t}");

        let f = s.next_after(t);
        prop_assert!(f.is_some(), "{}: no next fire", ctx);
        let f = f.unwrap();
        prop_assert!(f > t, "{}: next_after = {}", ctx, f);
        let q = s.prev_before(t);
        prop_assert!(q.is_some(), "{}: no previous fire", ctx);
        let q = q.unwrap();
        prop_assert!(q < t, "{}: prev_before = {}", ctx, q);

        // Whether `t` is itself a fire.
        let t_fires = s.next_after(t - nanos(1)) == Some(t);
        // The fire after `q` is `t` if `t` fires, else `f`: nothing fires strictly between.
        let after_q = s.next_after(q);
        prop_assert_eq!(after_q, Some(if t_fires { t } else { f }), "{}: next_after(prev_before = {})", ctx, q);
        prop_assert_eq!(s.prev_before(after_q.unwrap()), Some(q), "{}: prev_before(next_after({}))", ctx, q);
        // The fire before `f` is `t` if `t` fires, else `q`; either way at or before `t`.
        let before_f = s.prev_before(f);
        prop_assert_eq!(before_f, Some(if t_fires { t } else { q }), "{}: prev_before(next_after = {})", ctx, f);
        prop_assert!(before_f.unwrap() <= t);
        prop_assert_eq!(s.next_after(before_f.unwrap()), Some(f), "{}: next_after(prev_before({}))", ctx, f);
    }
}

proptest! {
    #![proptest_config(config(192))]

    /// In zones with daylight-saving time, over a window around one of the zone's transitions,
    /// `fires_in` gives exactly what a second-by-second scan applying the DST rules explicitly
    /// finds (see [`brute_force_zoned`]), for fixed-time and wildcard expressions under every
    /// policy; and `next_after` and `prev_before` from instants around the transition find the
    /// neighbouring fires of that scan.
    #[test]
    fn dst_fires_equal_brute_force(
        expr in expr_strategy(Profile::NearTransitions),
        policy in policy_strategy(),
        zone in 0..DST_ZONE_NAMES.len(),
        base in Y2000..Y2040,
        before_fraction in 0u32..=1000,
        after_fraction in 1u32..=1000,
        start_nanos in prop_oneof![3 => Just(0i64), 1 => 1i64..1_000_000_000],
    ) {
        let (name, tz) = &dst_zones()[zone];
        let model = expr.model();
        let rules = model.rules(policy);
        let text = expr.render();
        let options = ScheduleOptions::new().time_zone(tz.clone()).dst_policy(policy);
        let Some(schedule) = parse(&expr, &model, options)? else {
            return Ok(());
        };
        let transition = tz.following(ts(base)).next().expect("the zone keeps changing clocks");
        let at = transition.timestamp().as_second();
        let half = model.window_cap(60 * HOUR, 1500) / 2;
        let start = ts(at - half * i64::from(before_fraction) / 1000) + nanos(start_nanos);
        let end = ts(at + (half * i64::from(after_fraction) / 1000).max(1));

        let expected = brute_force_zoned(&model, rules, tz, ceil_second(start), last_second_before(end))?;
        let got: Vec<i64> = schedule.fires_in(start..end).map(|t| t.as_second()).collect();
        prop_assert_eq!(
            got.iter().map(|&t| show_in(t, tz)).collect::<Vec<_>>(),
            expected.iter().map(|&t| show_in(t, tz)).collect::<Vec<_>>(),
            "{:?} in {} ({:?}, {:?}) over {}..{}", text, name, policy, rules, start, end
        );

        // `next_after` and `prev_before` from instants in the window agree with the scan too:
        // on a quarter-hour grid around the transition (and a second either side), and at and
        // just after the fires near it.
        let mut probes: Vec<Timestamp> = Vec::new();
        for k in -8..=8 {
            for d in [-1, 0, 1] {
                probes.push(ts(at + k * 900 + d));
            }
        }
        let near: Vec<i64> = expected.iter().copied().filter(|e| (e - at).abs() <= 2 * HOUR).collect();
        for &e in near.iter().step_by(near.len() / 100 + 1) {
            probes.extend([ts(e), ts(e) + nanos(500_000_000)]);
        }
        for x in probes.into_iter().filter(|x| (start..end).contains(x)) {
            let ctx = format!("{text:?} in {name} ({policy:?}, {rules:?}) at {}", x.to_zoned(tz.clone()));
            // `expected[..i]` are the fires at or before `x`, `expected[..j]` those before it.
            let i = expected.partition_point(|&e| e <= x.as_second());
            let j = expected.partition_point(|&e| e <= last_second_before(x));
            let next = schedule.next_after(x);
            match expected.get(i) {
                Some(&e) => prop_assert_eq!(next, Some(ts(e)), "next_after: {}", ctx),
                None => prop_assert!(next.is_some_and(|n| n >= end), "next_after: {}: {:?}", ctx, next),
            }
            let prev = schedule.prev_before(x);
            match j.checked_sub(1) {
                Some(j) => prop_assert_eq!(prev, Some(ts(expected[j])), "prev_before: {}", ctx),
                None => prop_assert!(prev.is_some_and(|p| p < start), "prev_before: {}: {:?}", ctx, prev),
            }
        }
    }
}
