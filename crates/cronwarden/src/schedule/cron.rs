//! The compiled form of a cron expression and the search for matching civil times.
//!
//! Every field is a bit set, so "the next allowed minute at or after 17" is one shift and one
//! `trailing_zeros`. The day fields cannot be bit sets on their own because `L`, `W`, `#` and the
//! weekdays depend on the month, so [`CronSpec::day_mask`] computes, per month, the set of days
//! that match; the search then walks months, days and times of day, never single seconds.

use super::civil::{days_in_month, weekday, Civil};

/// How the two day fields combine (rule 2 of the vectors' README, as Vixie cron does).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum DayCombine {
    /// Neither day field starts with `*`: a day matches if either field matches.
    Or,
    /// One of them starts with `*` (even `*/2`): a day must match both.
    And,
}

/// A parsed cron expression: one bit set per field plus the month-relative day rules.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct CronSpec {
    /// Bits 0-59.
    pub seconds: u64,
    /// Bits 0-59.
    pub minutes: u64,
    /// Bits 0-23.
    pub hours: u32,
    /// Bits 1-31: plain days of the month.
    pub days_of_month: u32,
    /// Bit `n` (0-30): `L-n`, the n-th day before the last (bit 0 is `L` itself).
    pub last_day_offsets: u32,
    /// Bits 1-31: `dW`, the weekday nearest to day `d` (without leaving the month).
    pub nearest_weekdays: u32,
    /// `LW`: the last weekday (Monday-Friday) of the month.
    pub last_weekday_of_month: bool,
    /// Bits 1-12.
    pub months: u16,
    /// Bits 0-6, 0 = Sunday.
    pub days_of_week: u8,
    /// `nth_weekday[w]` bit `n` (1-5): `w#n`, the n-th such weekday of the month.
    pub nth_weekday: [u8; 7],
    /// Bits 0-6: `wL`, the last such weekday of the month.
    pub last_weekday: u8,
    pub combine: DayCombine,
    /// Whether the second, minute or hour field starts with `*` (or is a hashed step): such a
    /// job is a *wildcard* job for the daylight-saving rules.
    pub wildcard: bool,
}

/// The lowest set bit of `mask` at or above `from`.
#[inline]
fn next_bit(mask: u64, from: u32) -> Option<u32> {
    if from >= 64 {
        return None;
    }
    let rest = mask >> from;
    (rest != 0).then(|| from + rest.trailing_zeros())
}

/// The highest set bit of `mask` at or below `upto`.
#[inline]
fn prev_bit(mask: u64, upto: u32) -> Option<u32> {
    let rest = if upto >= 63 {
        mask
    } else {
        mask & ((2u64 << upto) - 1)
    };
    (rest != 0).then(|| 63 - rest.leading_zeros())
}

#[inline]
fn lowest(mask: u64) -> u32 {
    mask.trailing_zeros()
}

#[inline]
fn highest(mask: u64) -> u32 {
    63 - mask.leading_zeros()
}

/// Searches stop after this many years: an expression that can fire at all fires within 28
/// years (the calendar's weekday-and-leap-year cycle), so this bound only ends searches that run
/// into the end of the representable range.
const SEARCH_YEARS: i32 = 400;

/// The year range the engine computes in; `jiff` supports -9999..=9999.
pub(crate) const MIN_YEAR: i32 = -9998;
pub(crate) const MAX_YEAR: i32 = 9998;

impl CronSpec {
    fn has_day_rules(&self) -> bool {
        self.last_day_offsets != 0 || self.nearest_weekdays != 0 || self.last_weekday_of_month
    }

    fn has_weekday_rules(&self) -> bool {
        self.last_weekday != 0 || self.nth_weekday.iter().any(|&n| n != 0)
    }

    /// The set of days (bits 1-31) of `month` in `year` that this expression fires on.
    pub fn day_mask(&self, year: i32, month: u8) -> u32 {
        let len = u32::from(days_in_month(year, month));
        let valid = ((1u64 << (len + 1)) - 2) as u32;

        let mut dom = self.days_of_month;
        if self.has_day_rules() {
            dom |= self.month_relative_days(year, month, len);
        }

        let first = u32::from(weekday(year, month, 1));
        let mut dow = weekly_pattern(self.days_of_week, first);
        if self.has_weekday_rules() {
            dow |= self.nth_and_last_weekdays(first, len);
        }

        let days = match self.combine {
            DayCombine::Or => dom | dow,
            DayCombine::And => dom & dow,
        };
        days & valid
    }

    /// Days given by `L-n`, `dW` and `LW` for a month of `len` days whose first day falls on
    /// `weekday(year, month, 1)`.
    fn month_relative_days(&self, year: i32, month: u8, len: u32) -> u32 {
        let mut days = 0u32;
        let mut offsets = self.last_day_offsets;
        while offsets != 0 {
            let n = offsets.trailing_zeros();
            offsets &= offsets - 1;
            if n < len {
                days |= 1 << (len - n);
            }
        }
        let first = u32::from(weekday(year, month, 1));
        let weekday_of = |day: u32| (first + day - 1) % 7;
        let mut nearest = self.nearest_weekdays;
        while nearest != 0 {
            let d = nearest.trailing_zeros();
            nearest &= nearest - 1;
            if d > len {
                continue; // `31W` does not fire in a 30-day month, just as `31` does not.
            }
            let target = match weekday_of(d) {
                6 if d == 1 => 3, // Saturday the 1st: Monday the 3rd, never into the month before.
                6 => d - 1,       // Saturday: the Friday before.
                0 if d == len => d - 2, // Sunday the last: the Friday before, never into the next month.
                0 => d + 1,             // Sunday: the Monday after.
                _ => d,
            };
            days |= 1 << target;
        }
        if self.last_weekday_of_month {
            let target = match weekday_of(len) {
                6 => len - 1,
                0 => len - 2,
                _ => len,
            };
            days |= 1 << target;
        }
        days
    }

    /// Days given by `w#n` and `wL` for a month of `len` days starting on weekday `first`.
    fn nth_and_last_weekdays(&self, first: u32, len: u32) -> u32 {
        let mut days = 0u32;
        for w in 0..7u32 {
            let first_such = 1 + (w + 7 - first) % 7;
            let nth = self.nth_weekday[w as usize];
            let mut n_bits = u32::from(nth);
            while n_bits != 0 {
                let n = n_bits.trailing_zeros();
                n_bits &= n_bits - 1;
                let day = first_such + 7 * (n - 1);
                if day <= len {
                    days |= 1 << day;
                }
            }
            if self.last_weekday & (1 << w) != 0 {
                let last_such = first_such + 7 * ((len - first_such) / 7);
                days |= 1 << last_such;
            }
        }
        days
    }

    /// The first second of the day (the earliest allowed time of day).
    fn first_time(&self) -> (u8, u8, u8) {
        (
            lowest(u64::from(self.hours)) as u8,
            lowest(self.minutes) as u8,
            lowest(self.seconds) as u8,
        )
    }

    fn last_time(&self) -> (u8, u8, u8) {
        (
            highest(u64::from(self.hours)) as u8,
            highest(self.minutes) as u8,
            highest(self.seconds) as u8,
        )
    }

    /// The earliest allowed time of day at or after `h:m:s`.
    fn time_at_or_after(&self, h: u8, m: u8, s: u8) -> Option<(u8, u8, u8)> {
        let hours = u64::from(self.hours);
        if hours & (1 << h) != 0 {
            if self.minutes & (1 << m) != 0 {
                if let Some(s) = next_bit(self.seconds, u32::from(s)) {
                    return Some((h, m, s as u8));
                }
            }
            if let Some(m) = next_bit(self.minutes, u32::from(m) + 1) {
                return Some((h, m as u8, lowest(self.seconds) as u8));
            }
        }
        let h = next_bit(hours, u32::from(h) + 1)?;
        Some((
            h as u8,
            lowest(self.minutes) as u8,
            lowest(self.seconds) as u8,
        ))
    }

    /// The latest allowed time of day at or before `h:m:s`.
    fn time_at_or_before(&self, h: u8, m: u8, s: u8) -> Option<(u8, u8, u8)> {
        let hours = u64::from(self.hours);
        if hours & (1 << h) != 0 {
            if self.minutes & (1 << m) != 0 {
                if let Some(s) = prev_bit(self.seconds, u32::from(s)) {
                    return Some((h, m, s as u8));
                }
            }
            if m > 0 {
                if let Some(m) = prev_bit(self.minutes, u32::from(m) - 1) {
                    return Some((h, m as u8, highest(self.seconds) as u8));
                }
            }
        }
        if h == 0 {
            return None;
        }
        let h = prev_bit(hours, u32::from(h) - 1)?;
        Some((
            h as u8,
            highest(self.minutes) as u8,
            highest(self.seconds) as u8,
        ))
    }

    /// The earliest civil time at or after `from` that matches every field.
    pub fn next_civil(&self, from: Civil) -> Option<Civil> {
        let months = u64::from(self.months);
        let (mut year, mut month) = (from.year, from.month);
        // Within the first day searched, the time must be at or after `from`'s; later days start
        // at midnight.
        let mut day = from.day;
        let mut time = Some((from.hour, from.minute, from.second));
        let last_year = from.year.saturating_add(SEARCH_YEARS).min(MAX_YEAR);
        while year <= last_year {
            if months & (1 << month) == 0 {
                match next_bit(months, u32::from(month) + 1) {
                    Some(m) => month = m as u8,
                    None => {
                        year += 1;
                        month = lowest(months) as u8;
                    }
                }
                day = 1;
                time = None;
                continue;
            }
            let mut days = self.day_mask(year, month) & !((1u32 << day) - 1);
            while days != 0 {
                let d = days.trailing_zeros() as u8;
                days &= days - 1;
                let found = match time.take() {
                    Some((h, m, s)) if d == day => self.time_at_or_after(h, m, s),
                    _ => Some(self.first_time()),
                };
                if let Some((hour, minute, second)) = found {
                    return Some(Civil {
                        year,
                        month,
                        day: d,
                        hour,
                        minute,
                        second,
                    });
                }
            }
            if month == 12 {
                year += 1;
                month = 1;
            } else {
                month += 1;
            }
            day = 1;
            time = None;
        }
        None
    }

    /// The latest civil time at or before `upto` that matches every field.
    pub fn prev_civil(&self, upto: Civil) -> Option<Civil> {
        let months = u64::from(self.months);
        let (mut year, mut month) = (upto.year, upto.month);
        let mut day = upto.day;
        let mut time = Some((upto.hour, upto.minute, upto.second));
        let first_year = upto.year.saturating_sub(SEARCH_YEARS).max(MIN_YEAR);
        while year >= first_year {
            if months & (1 << month) == 0 {
                match prev_bit(months, u32::from(month) - 1) {
                    Some(m) if m >= 1 => month = m as u8,
                    _ => {
                        year -= 1;
                        month = highest(months) as u8;
                    }
                }
                day = 31;
                time = None;
                continue;
            }
            let keep = if day >= 31 {
                u32::MAX
            } else {
                (2u32 << day) - 1
            };
            let mut days = self.day_mask(year, month) & keep;
            while days != 0 {
                let d = (31 - days.leading_zeros()) as u8;
                days &= !(1 << d);
                let found = match time.take() {
                    Some((h, m, s)) if d == day => self.time_at_or_before(h, m, s),
                    _ => Some(self.last_time()),
                };
                if let Some((hour, minute, second)) = found {
                    return Some(Civil {
                        year,
                        month,
                        day: d,
                        hour,
                        minute,
                        second,
                    });
                }
            }
            if month == 1 {
                year -= 1;
                month = 12;
            } else {
                month -= 1;
            }
            day = 31;
            time = None;
        }
        None
    }

    /// Whether any day can ever match: false for `0 0 31 2 *` or `0 0 30 FEB *`.
    ///
    /// Only days can fail to exist (every other field is a non-empty set), and the pattern of
    /// weekdays and leap years repeats every 28 years between 1901 and 2099, so scanning the
    /// months of 2001-2028 decides it.
    pub fn can_fire(&self) -> bool {
        (2001..2029).any(|year| {
            (1..=12u8)
                .any(|month| self.months & (1 << month) != 0 && self.day_mask(year, month) != 0)
        })
    }

    /// Whether the civil time matches every field (used by tests as an independent check).
    #[cfg(test)]
    pub fn matches(&self, c: Civil) -> bool {
        self.seconds & (1 << c.second) != 0
            && self.minutes & (1 << c.minute) != 0
            && self.hours & (1 << c.hour) != 0
            && self.months & (1 << c.month) != 0
            && self.day_mask(c.year, c.month) & (1 << c.day) != 0
    }
}

/// Days 1-31 (as bits 1-31) whose weekday is in `days_of_week`, for a month starting on weekday
/// `first` (0 = Sunday).
#[inline]
fn weekly_pattern(days_of_week: u8, first: u32) -> u32 {
    // Rotate the weekday set so that bit 0 is the weekday of the 1st, then repeat it weekly.
    let set = u32::from(days_of_week) & 0x7f;
    let week = ((set >> first) | (set << (7 - first))) & 0x7f;
    let month = week | week << 7 | week << 14 | week << 21 | week << 28;
    month << 1
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weekly_pattern_marks_the_right_days() {
        // November 2026 starts on a Sunday: its Mondays are the 2nd, 9th, 16th, 23rd and 30th.
        assert_eq!(weekday(2026, 11, 1), 0);
        let mondays = weekly_pattern(1 << 1, 0);
        let days: Vec<u32> = (1..=31).filter(|d| mondays & (1 << d) != 0).collect();
        assert_eq!(days, vec![2, 9, 16, 23, 30]);
        // May 2026 starts on a Friday: its Sundays are the 3rd, 10th, 17th, 24th and 31st.
        let sundays = weekly_pattern(1, 5);
        let days: Vec<u32> = (1..=31).filter(|d| sundays & (1 << d) != 0).collect();
        assert_eq!(days, vec![3, 10, 17, 24, 31]);
    }

    #[test]
    fn civil_search_agrees_with_a_minute_by_minute_scan() {
        use crate::schedule::parse::{parse, Parsed};
        for expr in [
            "0 0 L * *",
            "*/7 3-5 15W * *",
            "0 12 * * 5L",
            "30 1 1,15 * MON",
            "0 0 * * FRI#2",
            "59 23 LW * *",
        ] {
            let Ok(Parsed::Cron(spec)) = parse(expr, None) else {
                panic!("{expr}")
            };
            let start = Civil::start_of_day(2027, 12, 1).to_local_seconds();
            let scanned: Vec<Civil> = (0..100 * 1440)
                .map(|minute| Civil::from_local_seconds(start + minute * 60))
                .filter(|&c| spec.matches(c))
                .collect();
            let mut searched = Vec::new();
            let mut from = Civil::from_local_seconds(start);
            while let Some(m) = spec
                .next_civil(from)
                .filter(|m| m.to_local_seconds() < start + 100 * 86_400)
            {
                searched.push(m);
                from = m.succ();
            }
            assert_eq!(searched, scanned, "{expr}");
            // And backwards.
            let mut back = Vec::new();
            let mut upto = Civil::from_local_seconds(start + 100 * 86_400 - 1);
            while let Some(m) = spec
                .prev_civil(upto)
                .filter(|m| m.to_local_seconds() >= start)
            {
                back.push(m);
                upto = m.pred();
            }
            back.reverse();
            assert_eq!(back, scanned, "{expr} backwards");
        }
    }

    #[test]
    fn bit_helpers_respect_their_bounds() {
        assert_eq!(next_bit(0b1010, 2), Some(3));
        assert_eq!(next_bit(0b1010, 4), None);
        assert_eq!(next_bit(1 << 59, 64), None);
        assert_eq!(prev_bit(0b1010, 2), Some(1));
        assert_eq!(prev_bit(0b1010, 0), None);
        assert_eq!(prev_bit(1 << 63, 63), Some(63));
    }
}
