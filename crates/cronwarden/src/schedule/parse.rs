//! The schedule expression parser.
//!
//! It accepts cron expressions of 5 or 6 fields, `@` aliases, `@every` intervals and the
//! named forms that existing applications store (`every_5_minutes`, `cron:0 2 * * *`), and turns
//! them into a [`CronSpec`] or an interval. Every rejection names the field, the text and the
//! reason, and carries the byte range of the text so that the caller can point at it.

use super::cron::{CronSpec, DayCombine};
use super::error::{Field, ParseError};
use super::hash::hashed;

/// What an expression means once parsed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Parsed {
    Cron(CronSpec),
    /// `@every`: a fixed period in seconds.
    Every(i64),
}

struct FieldDef {
    field: Field,
    min: u32,
    max: u32,
    names: &'static [&'static str],
}

const MONTH_NAMES: &[&str] = &[
    "", "JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC",
];
const WEEKDAY_NAMES: &[&str] = &["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"];

const SECOND: FieldDef = FieldDef {
    field: Field::Second,
    min: 0,
    max: 59,
    names: &[],
};
const MINUTE: FieldDef = FieldDef {
    field: Field::Minute,
    min: 0,
    max: 59,
    names: &[],
};
const HOUR: FieldDef = FieldDef {
    field: Field::Hour,
    min: 0,
    max: 23,
    names: &[],
};
const DAY_OF_MONTH: FieldDef = FieldDef {
    field: Field::DayOfMonth,
    min: 1,
    max: 31,
    names: &[],
};
const MONTH: FieldDef = FieldDef {
    field: Field::Month,
    min: 1,
    max: 12,
    names: MONTH_NAMES,
};
// Day-of-week accepts 0-7 (both 0 and 7 are Sunday); 7 is folded into 0 after parsing.
const DAY_OF_WEEK: FieldDef = FieldDef {
    field: Field::DayOfWeek,
    min: 0,
    max: 7,
    names: WEEKDAY_NAMES,
};

/// The largest `@every` period: about 100 years, far beyond any sensible interval, small enough
/// that instant arithmetic cannot overflow.
const MAX_PERIOD_SECONDS: i64 = 100 * 366 * 86_400;

/// One field's values as parsed, before the fields are combined.
#[derive(Default)]
struct FieldValues {
    bits: u64,
    /// The field's text starts with `*` or `?`.
    star: bool,
    /// The field uses a hashed step (`H/15`), which spreads over the whole range like `*/15`.
    hashed_step: bool,
    last_day_offsets: u32,
    nearest_weekdays: u32,
    last_weekday_of_month: bool,
    nth_weekday: [u8; 7],
    last_weekday: u8,
}

struct Parser<'a> {
    input: &'a str,
    hash_key: Option<&'a str>,
}

/// Parses `input`; `hash_key` (usually the job's name) chooses the values of `H` fields.
pub(crate) fn parse(input: &str, hash_key: Option<&str>) -> Result<Parsed, ParseError> {
    Parser { input, hash_key }.expression()
}

/// Up to this many whitespace-separated words are kept; more is an error anyway.
const MAX_WORDS: usize = 8;

/// The words of an expression with their byte offsets, kept on the stack: parsing a typical
/// expression allocates nothing but the schedule's copy of its text.
struct Words<'a> {
    words: [(usize, &'a str); MAX_WORDS],
    /// How many words there are in all (possibly more than `MAX_WORDS`).
    count: usize,
}

impl<'a> Words<'a> {
    /// Splits `text` (which starts at byte `base` of the input) on ASCII whitespace.
    fn split(text: &'a str, base: usize) -> Words<'a> {
        let mut words = Words {
            words: [(0, ""); MAX_WORDS],
            count: 0,
        };
        let mut push = |at: usize, word: &'a str| {
            if words.count < MAX_WORDS {
                words.words[words.count] = (base + at, word);
            }
            words.count += 1;
        };
        let mut start = None;
        for (i, b) in text.bytes().enumerate() {
            match (b.is_ascii_whitespace(), start) {
                (true, Some(s)) => {
                    push(s, &text[s..i]);
                    start = None;
                }
                (false, None) => start = Some(i),
                _ => {}
            }
        }
        if let Some(s) = start {
            push(s, &text[s..]);
        }
        words
    }

    fn as_slice(&self) -> &[(usize, &'a str)] {
        &self.words[..self.count.min(MAX_WORDS)]
    }
}

/// An ASCII-uppercased copy of a list item, on the stack when it is short (as items are).
enum Upper {
    Inline([u8; 32], usize),
    Heap(String),
}

impl Upper {
    fn of(item: &str) -> Upper {
        if item.len() <= 32 {
            let mut buf = [0u8; 32];
            buf[..item.len()].copy_from_slice(item.as_bytes());
            buf[..item.len()].make_ascii_uppercase();
            Upper::Inline(buf, item.len())
        } else {
            Upper::Heap(item.to_ascii_uppercase())
        }
    }

    fn as_str(&self) -> &str {
        match self {
            // Uppercasing ASCII bytes of valid UTF-8 leaves it valid UTF-8.
            Upper::Inline(buf, len) => std::str::from_utf8(&buf[..*len]).unwrap_or_default(),
            Upper::Heap(s) => s,
        }
    }
}

impl<'a> Parser<'a> {
    fn error(
        &self,
        at: usize,
        len: usize,
        field: Option<Field>,
        why: impl Into<String>,
    ) -> ParseError {
        ParseError::new(self.input, at..at + len, field, why)
    }

    fn expression(&self) -> Result<Parsed, ParseError> {
        let trimmed = self.input.trim_start();
        let mut base = self.input.len() - trimmed.len();
        let mut body = trimmed.trim_end();
        if body.is_empty() {
            return Err(self.error(0, self.input.len(), None, "the schedule is empty"));
        }
        if body
            .get(..5)
            .is_some_and(|p| p.eq_ignore_ascii_case("cron:"))
        {
            base += 5;
            let rest = &body[5..];
            let inner = rest.trim_start();
            base += rest.len() - inner.len();
            body = inner;
            if body.is_empty() {
                return Err(self.error(
                    base,
                    0,
                    None,
                    "`cron:` must be followed by a cron expression",
                ));
            }
        } else if let Some(expansion) = named_schedule(body) {
            return self.expansion(expansion, base, body.len());
        } else if body.starts_with("every_") || body.starts_with("EVERY_") {
            return Err(self.error(
                base,
                body.len(),
                None,
                format!(
                    "unknown schedule name \"{body}\": the named forms are every_minute, \
                     every_N_minutes (N dividing 60), every_N_hours (N dividing 24), hourly, \
                     daily, weekly, monthly and yearly; for other periods use \"@every 7m\""
                ),
            ));
        }
        if body.starts_with('@') {
            return self.at_form(body, base);
        }
        self.fields(body, base)
    }

    /// Parses the cron expression a name or alias stands for, pointing errors at the name.
    fn expansion(&self, expansion: String, at: usize, len: usize) -> Result<Parsed, ParseError> {
        Parser {
            input: &expansion,
            hash_key: self.hash_key,
        }
        .fields(&expansion, 0)
        .map_err(|e| self.error(at, len, e.field(), e.reason().to_owned()))
    }

    fn at_form(&self, body: &str, base: usize) -> Result<Parsed, ParseError> {
        let words = Words::split(body, base);
        let parts = words.as_slice();
        let (at, name) = parts[0];
        let lower = name.to_ascii_lowercase();
        let alias = match lower.as_str() {
            "@yearly" | "@annually" => Some("0 0 1 1 *"),
            "@monthly" => Some("0 0 1 * *"),
            "@weekly" => Some("0 0 * * 0"),
            "@daily" | "@midnight" => Some("0 0 * * *"),
            "@hourly" => Some("0 * * * *"),
            _ => None,
        };
        if let Some(alias) = alias {
            if let Some(&(extra_at, extra)) = parts.get(1) {
                return Err(self.error(
                    extra_at,
                    body.len() - (extra_at - base),
                    None,
                    format!("{name} takes nothing after it, found \"{extra}\""),
                ));
            }
            return self.expansion(alias.to_owned(), at, name.len());
        }
        match lower.as_str() {
            "@every" => {
                let Some(&(dur_at, dur)) = parts.get(1) else {
                    return Err(self.error(
                        at,
                        name.len(),
                        None,
                        "@every needs a period, for example \"@every 90s\" or \"@every 1h30m\"",
                    ));
                };
                if let Some(&(extra_at, extra)) = parts.get(2) {
                    return Err(self.error(
                        extra_at,
                        extra.len(),
                        None,
                        format!("@every takes one period, found \"{extra}\" after it"),
                    ));
                }
                self.period(dur, dur_at).map(Parsed::Every)
            }
            "@reboot" => Err(self.error(
                at,
                name.len(),
                None,
                "@reboot runs at start-up, not on a schedule; cronwarden does not support it",
            )),
            _ => Err(self.error(
                at,
                name.len(),
                None,
                format!(
                    "unknown alias \"{name}\": use @yearly, @annually, @monthly, @weekly, \
                     @daily, @midnight, @hourly or @every <period>"
                ),
            )),
        }
    }

    /// A period such as `90s`, `5m`, `1h30m` or `1d`, in whole seconds.
    fn period(&self, text: &str, at: usize) -> Result<i64, ParseError> {
        let bad = |why: String| self.error(at, text.len(), None, why);
        let mut total: i64 = 0;
        let mut number: Option<i64> = None;
        let mut seen_unit = false;
        for c in text.chars() {
            if let Some(d) = c.to_digit(10) {
                let n = number
                    .unwrap_or(0)
                    .checked_mul(10)
                    .and_then(|n| n.checked_add(i64::from(d)));
                number = Some(
                    n.filter(|&n| n <= MAX_PERIOD_SECONDS)
                        .ok_or_else(|| bad(format!("the period \"{text}\" is too long")))?,
                );
                continue;
            }
            let unit = match c.to_ascii_lowercase() {
                's' => 1,
                'm' => 60,
                'h' => 3600,
                'd' => 86_400,
                _ => {
                    return Err(bad(format!(
                        "\"{text}\" is not a period: use whole numbers with units s, m, h or d, \
                         such as 90s, 5m or 1h30m"
                    )))
                }
            };
            let Some(n) = number.take() else {
                return Err(bad(format!(
                    "\"{text}\" has a unit without a number before it"
                )));
            };
            total = n
                .checked_mul(unit)
                .and_then(|v| total.checked_add(v))
                .filter(|&v| v <= MAX_PERIOD_SECONDS)
                .ok_or_else(|| bad(format!("the period \"{text}\" is too long")))?;
            seen_unit = true;
        }
        if number.is_some() || !seen_unit {
            return Err(bad(format!(
                "\"{text}\" needs a unit after each number (s, m, h or d), such as 90s or 1h30m"
            )));
        }
        if total == 0 {
            return Err(bad("the period must be at least one second".to_owned()));
        }
        Ok(total)
    }

    fn fields(&self, body: &str, base: usize) -> Result<Parsed, ParseError> {
        let words = Words::split(body, base);
        let parts = words.as_slice();
        let defs: &[&FieldDef] = match words.count {
            5 => &[&MINUTE, &HOUR, &DAY_OF_MONTH, &MONTH, &DAY_OF_WEEK],
            6 => &[&SECOND, &MINUTE, &HOUR, &DAY_OF_MONTH, &MONTH, &DAY_OF_WEEK],
            n => {
                return Err(self.error(
                    base,
                    body.len(),
                    None,
                    format!(
                        "expected 5 fields (minute hour day-of-month month day-of-week) or 6 \
                         (a seconds field first), found {n}"
                    ),
                ))
            }
        };
        let has_seconds = parts.len() == 6;
        // Without a seconds field, jobs fire at second 0.
        let mut values: [FieldValues; 6] = Default::default();
        values[0].bits = 1;
        let first = 6 - parts.len();
        for (i, (def, &(at, text))) in defs.iter().zip(parts).enumerate() {
            // Each field hashes differently, but the same field hashes alike in 5- and
            // 6-field forms, so adding a seconds field does not move the minute.
            values[first + i] = self.field(def, text, at, def.field as u8)?;
        }
        let [second, minute, hour, dom, month, dow] = values;

        let wildcard = [&second, &minute, &hour]
            .iter()
            .any(|f| f.star || f.hashed_step);
        let dow_bits = ((dow.bits & 0x7f) | (dow.bits >> 7 & 1)) as u8;
        let spec = CronSpec {
            seconds: second.bits,
            minutes: minute.bits,
            hours: hour.bits as u32,
            days_of_month: dom.bits as u32,
            last_day_offsets: dom.last_day_offsets,
            nearest_weekdays: dom.nearest_weekdays,
            last_weekday_of_month: dom.last_weekday_of_month,
            months: month.bits as u16,
            days_of_week: dow_bits,
            nth_weekday: dow.nth_weekday,
            last_weekday: dow.last_weekday,
            combine: if dom.star || dow.star {
                DayCombine::And
            } else {
                DayCombine::Or
            },
            wildcard,
        };
        if !spec.can_fire() {
            let first_day_field = if has_seconds { 3 } else { 2 };
            let start = parts[first_day_field].0;
            let (last_at, last) = parts[parts.len() - 1];
            return Err(self.error(
                start,
                last_at + last.len() - start,
                None,
                "this expression never fires: no month it allows has a day that matches its \
                 day-of-month and day-of-week fields",
            ));
        }
        Ok(Parsed::Cron(spec))
    }

    fn field(
        &self,
        def: &FieldDef,
        text: &str,
        at: usize,
        salt: u8,
    ) -> Result<FieldValues, ParseError> {
        let mut out = FieldValues {
            star: text.starts_with(['*', '?']),
            ..FieldValues::default()
        };
        let mut offset = 0;
        for item in text.split(',') {
            let item_at = at + offset;
            offset += item.len() + 1;
            if item.is_empty() {
                return Err(self.error(
                    item_at,
                    0,
                    Some(def.field),
                    format!("the {} field has an empty list item", def.field),
                ));
            }
            self.item(def, item, item_at, salt, &mut out)?;
        }
        Ok(out)
    }

    fn item(
        &self,
        def: &FieldDef,
        item: &str,
        at: usize,
        salt: u8,
        out: &mut FieldValues,
    ) -> Result<(), ParseError> {
        let field = def.field;
        // The common items first: a plain number or a lone star.
        if let Some(n) = parse_number(item).filter(|n| (def.min..=def.max).contains(n)) {
            out.bits |= 1 << n;
            return Ok(());
        }
        if item == "*" {
            out.bits |= ((1u64 << (def.max + 1)) - 1) & !((1u64 << def.min) - 1);
            return Ok(());
        }
        // Only names and the letter rules (L, W, H) need case folding.
        let has_letters = item.bytes().any(|b| b.is_ascii_alphabetic());
        let folded;
        let upper = if has_letters {
            folded = Upper::of(item);
            folded.as_str()
        } else {
            item
        };
        let whole = |why: String| self.error(at, item.len(), Some(field), why);

        if has_letters || item.as_bytes().contains(&b'#') {
            if field == Field::DayOfMonth && self.day_of_month_rule(upper, item, at, out)? {
                return Ok(());
            }
            if field == Field::DayOfWeek && self.day_of_week_rule(def, upper, item, at, out)? {
                return Ok(());
            }
        }

        let (range, step) = match upper.as_bytes().iter().position(|&b| b == b'/') {
            Some(slash) => (&upper[..slash], Some((&upper[slash + 1..], at + slash + 1))),
            None => (upper, None),
        };
        let step = match step {
            None => None,
            Some((text, step_at)) => {
                let span = def.max - def.min + 1;
                let n = parse_number(text).filter(|&n| n >= 1 && n <= span).ok_or_else(|| {
                    self.error(
                        step_at,
                        text.len(),
                        Some(field),
                        format!("the step in the {field} field must be a number from 1 to {span}, got \"{text}\""),
                    )
                })?;
                Some(n)
            }
        };

        let (low, high, hashed_start) = if range == "*" {
            (def.min, def.max, None)
        } else if range == "?" {
            if !matches!(field, Field::DayOfMonth | Field::DayOfWeek) {
                return Err(whole(format!(
                    "\"?\" is only allowed in the day-of-month and day-of-week fields, not in the {field} field"
                )));
            }
            if step.is_some() {
                return Err(whole("\"?\" cannot take a step; use \"*/n\"".to_owned()));
            }
            (def.min, def.max, None)
        } else if range == "H" || range.starts_with("H(") {
            let (low, high) = if range == "H" {
                // Hashed days of the month stay within 1-28 so that every month has them;
                // hashed weekdays within 0-6 so that Sunday is not twice as likely.
                let high = match field {
                    Field::DayOfMonth => 28,
                    Field::DayOfWeek => 6,
                    _ => def.max,
                };
                (def.min, high)
            } else {
                let inner = range
                    .strip_prefix("H(")
                    .and_then(|r| r.strip_suffix(')'))
                    .ok_or_else(|| {
                        whole(format!(
                            "\"{item}\" is not a hashed range; write it as H(0-29)"
                        ))
                    })?;
                let (a, b) = inner.split_once('-').ok_or_else(|| {
                    whole(format!(
                        "\"{item}\" is not a hashed range; write it as H(0-29)"
                    ))
                })?;
                let a = self.value(def, a, at + 2, item)?;
                let b = self.value(def, b, at + 2 + a_len(inner), item)?;
                if a > b {
                    return Err(whole(format!(
                        "the range in \"{item}\" is backwards: write the smaller value first"
                    )));
                }
                (a, b)
            };
            let Some(key) = self.hash_key else {
                return Err(whole(format!(
                    "\"{item}\" in the {field} field needs a hash key to choose its value (normally the \
                     job's name)"
                )));
            };
            let modulus = step.unwrap_or(high - low + 1);
            let start = low + hashed(key, salt, modulus);
            if step.is_some() {
                out.hashed_step = true;
                (low, high, Some(start))
            } else {
                (start, start, None)
            }
        } else if let Some((a, b)) = range.split_once('-') {
            let low = self.value(def, a, at, item)?;
            let high = self.value(def, b, at + a.len() + 1, item)?;
            if low > high {
                return Err(whole(format!(
                    "the range {item} in the {field} field is backwards: write the smaller value first"
                )));
            }
            (low, high, None)
        } else {
            let value = self.value(def, range, at, item)?;
            // `N/s` means `N-max/s`, as in Vixie cron.
            (value, if step.is_some() { def.max } else { value }, None)
        };

        let step = step.unwrap_or(1);
        let mut v = hashed_start.unwrap_or(low);
        while v <= high {
            out.bits |= 1u64 << v;
            v += step;
        }
        Ok(())
    }

    /// Parses one value (a number or, where the field has them, a name) of `item`.
    fn value(&self, def: &FieldDef, text: &str, at: usize, item: &str) -> Result<u32, ParseError> {
        let field = def.field;
        if let Some(n) = parse_number(text) {
            if n < def.min || n > def.max {
                return Err(self.error(
                    at,
                    text.len(),
                    Some(field),
                    format!(
                        "the {field} field allows {}-{}, got {text}",
                        def.min, def.max
                    ),
                ));
            }
            return Ok(n);
        }
        if let Some(i) = def
            .names
            .iter()
            .position(|n| !n.is_empty() && n.eq_ignore_ascii_case(text))
        {
            return Ok(i as u32);
        }
        let expected = match field {
            Field::Month => "a month 1-12 or JAN-DEC",
            Field::DayOfWeek => "a weekday 0-7 or SUN-SAT",
            Field::DayOfMonth => "a day 1-31, L, L-n, nW or LW",
            _ => "a number",
        };
        let shown = if text.is_empty() { item } else { text };
        let (at, len) = if text.is_empty() {
            (at, 0)
        } else {
            (at, text.len())
        };
        Err(self.error(
            at,
            len,
            Some(field),
            format!(
                "the {field} field expects {expected}, a range (1-5), a step (*/15) or a list (1,2); \
                 \"{shown}\" is none of these"
            ),
        ))
    }

    /// `L`, `L-n`, `LW` and `nW`; returns whether `upper` was one of them.
    fn day_of_month_rule(
        &self,
        upper: &str,
        item: &str,
        at: usize,
        out: &mut FieldValues,
    ) -> Result<bool, ParseError> {
        let field = Some(Field::DayOfMonth);
        if upper == "L" {
            out.last_day_offsets |= 1;
        } else if upper == "LW" {
            out.last_weekday_of_month = true;
        } else if let Some(n) = upper.strip_prefix("L-") {
            let n = parse_number(n)
                .filter(|n| (1..=30).contains(n))
                .ok_or_else(|| {
                    self.error(
                        at,
                        item.len(),
                        field,
                        format!("\"{item}\": L-n needs n from 1 to 30"),
                    )
                })?;
            out.last_day_offsets |= 1 << n;
        } else if let Some(d) = upper
            .strip_suffix('W')
            .filter(|d| !d.is_empty() && !d.contains(['/', '-', '*']))
        {
            let d = parse_number(d)
                .filter(|d| (1..=31).contains(d))
                .ok_or_else(|| {
                    self.error(
                        at,
                        item.len(),
                        field,
                        format!("\"{item}\": nW needs a day n from 1 to 31"),
                    )
                })?;
            out.nearest_weekdays |= 1 << d;
        } else if upper.contains(['L', 'W']) && !upper.starts_with('H') {
            return Err(self.error(
                at,
                item.len(),
                field,
                format!("\"{item}\" is not valid in the day-of-month field: L, W and LW take no range or step (use L, L-3, 15W or LW)"),
            ));
        } else {
            return Ok(false);
        }
        Ok(true)
    }

    /// `wL` (the last such weekday) and `w#n` (the n-th); returns whether `upper` was one.
    fn day_of_week_rule(
        &self,
        def: &FieldDef,
        upper: &str,
        item: &str,
        at: usize,
        out: &mut FieldValues,
    ) -> Result<bool, ParseError> {
        let field = Some(Field::DayOfWeek);
        if let Some((w, n)) = upper.split_once('#') {
            let weekday = self.value(def, w, at, item)? % 7;
            let n_at = at + w.len() + 1;
            let n = parse_number(n)
                .filter(|n| (1..=5).contains(n))
                .ok_or_else(|| {
                    self.error(
                        n_at,
                        item.len() - w.len() - 1,
                        field,
                        format!("\"{item}\": the n in weekday#n must be 1-5"),
                    )
                })?;
            out.nth_weekday[weekday as usize] |= 1 << n;
            return Ok(true);
        }
        if upper == "L" {
            return Err(self.error(
                at,
                item.len(),
                field,
                "in the day-of-week field L needs a weekday before it, e.g. 5L or FRIL for the last Friday",
            ));
        }
        if let Some(w) = upper
            .strip_suffix('L')
            .filter(|w| !w.contains(['/', '-', '*']))
        {
            let weekday = self.value(def, w, at, item)? % 7;
            out.last_weekday |= 1 << weekday;
            return Ok(true);
        }
        Ok(false)
    }
}

fn a_len(inner: &str) -> usize {
    inner.find('-').map_or(0, |i| i + 1)
}

/// A non-negative decimal number of at most 9 digits.
fn parse_number(text: &str) -> Option<u32> {
    if text.is_empty() || text.len() > 9 || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

/// The cron expression that a named schedule such as `every_5_minutes` stands for.
fn named_schedule(name: &str) -> Option<String> {
    // Cron expressions (which start with a digit, `*`, `?`, `H` or a list) skip the lookup.
    if !name
        .as_bytes()
        .first()
        .is_some_and(|b| b.is_ascii_alphabetic())
        || name.len() > 32
    {
        return None;
    }
    let lower = name.to_ascii_lowercase();
    let fixed = match lower.as_str() {
        "every_minute" => "* * * * *",
        "hourly" | "every_hour" => "0 * * * *",
        "daily" => "0 0 * * *",
        "weekly" => "0 0 * * 0",
        "monthly" => "0 0 1 * *",
        "yearly" | "annually" => "0 0 1 1 *",
        _ => {
            let rest = lower.strip_prefix("every_")?;
            if let Some(n) = rest.strip_suffix("_minutes").and_then(parse_number) {
                return (n >= 1 && 60 % n == 0).then(|| format!("*/{n} * * * *"));
            }
            if let Some(n) = rest.strip_suffix("_hours").and_then(parse_number) {
                return (n >= 1 && 24 % n == 0).then(|| format!("0 */{n} * * *"));
            }
            return None;
        }
    };
    Some(fixed.to_owned())
}
