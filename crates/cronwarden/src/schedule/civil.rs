//! Civil (wall-clock) date-time arithmetic on plain integers.
//!
//! The search for matching fire times runs entirely in civil time, where a day always has 86,400
//! seconds; only its results are mapped to instants through the time zone. Doing this arithmetic
//! on integers instead of through a date library's checked types is what keeps a next-fire
//! computation in the tens of nanoseconds.

/// A civil date and time with whole-second precision, in the proleptic Gregorian calendar.
///
/// Field order makes the derived `Ord` chronological.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) struct Civil {
    pub year: i32,
    pub month: u8,
    pub day: u8,
    pub hour: u8,
    pub minute: u8,
    pub second: u8,
}

/// Seconds in a civil day.
pub(crate) const DAY: i64 = 86_400;

impl Civil {
    /// The first second of the given day.
    #[cfg(test)]
    pub fn start_of_day(year: i32, month: u8, day: u8) -> Civil {
        Civil {
            year,
            month,
            day,
            hour: 0,
            minute: 0,
            second: 0,
        }
    }

    /// The civil time `secs` seconds after 1970-01-01T00:00:00 (a "local" epoch second).
    pub fn from_local_seconds(secs: i64) -> Civil {
        let days = secs.div_euclid(DAY);
        let rem = secs.rem_euclid(DAY) as u32;
        let (year, month, day) = civil_from_days(days);
        Civil {
            year,
            month,
            day,
            hour: (rem / 3600) as u8,
            minute: (rem / 60 % 60) as u8,
            second: (rem % 60) as u8,
        }
    }

    /// Seconds since 1970-01-01T00:00:00 of this civil time, as if it were UTC.
    pub fn to_local_seconds(self) -> i64 {
        days_from_civil(self.year, self.month, self.day) * DAY
            + i64::from(self.hour) * 3600
            + i64::from(self.minute) * 60
            + i64::from(self.second)
    }

    /// The civil second after this one.
    pub fn succ(self) -> Civil {
        Civil::from_local_seconds(self.to_local_seconds() + 1)
    }

    /// The civil second before this one.
    #[cfg(test)]
    pub fn pred(self) -> Civil {
        Civil::from_local_seconds(self.to_local_seconds() - 1)
    }

    /// The same civil time as a `jiff` value (for time-zone lookups and display).
    pub fn to_jiff(self) -> Option<jiff::civil::DateTime> {
        let year = i16::try_from(self.year).ok()?;
        jiff::civil::DateTime::new(
            year,
            self.month as i8,
            self.day as i8,
            self.hour as i8,
            self.minute as i8,
            self.second as i8,
            0,
        )
        .ok()
    }
}

/// Whether `year` is a leap year in the Gregorian calendar.
pub(crate) fn is_leap_year(year: i32) -> bool {
    year % 4 == 0 && (year % 100 != 0 || year % 400 == 0)
}

/// The number of days in `month` (1-12) of `year`.
pub(crate) fn days_in_month(year: i32, month: u8) -> u8 {
    match month {
        2 if is_leap_year(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a civil date (Howard Hinnant's `days_from_civil`).
pub(crate) fn days_from_civil(year: i32, month: u8, day: u8) -> i64 {
    let y = i64::from(year) - i64::from(month <= 2);
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = i64::from(month);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The civil date of a day number counted from 1970-01-01 (inverse of [`days_from_civil`]).
pub(crate) fn civil_from_days(days: i64) -> (i32, u8, u8) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u8;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u8;
    let year = (yoe + era * 400 + i64::from(month <= 2)) as i32;
    (year, month, day)
}

/// Day of the week of a civil date, 0 = Sunday .. 6 = Saturday.
pub(crate) fn weekday(year: i32, month: u8, day: u8) -> u8 {
    // 1970-01-01 was a Thursday (4).
    (days_from_civil(year, month, day) + 4).rem_euclid(7) as u8
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn day_numbers_round_trip_over_four_centuries() {
        for days in -200_000..200_000 {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, m, d), days);
            assert!(d >= 1 && d <= days_in_month(y, m));
        }
    }

    #[test]
    fn weekdays_and_leap_years_match_known_dates() {
        assert_eq!(weekday(1970, 1, 1), 4);
        assert_eq!(weekday(2000, 2, 29), 2); // a Tuesday
        assert_eq!(weekday(2026, 11, 22), 0); // a Sunday
        assert!(is_leap_year(2000) && is_leap_year(2028));
        assert!(!is_leap_year(1900) && !is_leap_year(2100) && !is_leap_year(2027));
        assert_eq!(days_in_month(2028, 2), 29);
        assert_eq!(days_in_month(2100, 2), 28);
    }

    #[test]
    fn seconds_round_trip_and_step() {
        let c = Civil {
            year: 2026,
            month: 12,
            day: 31,
            hour: 23,
            minute: 59,
            second: 59,
        };
        assert_eq!(Civil::from_local_seconds(c.to_local_seconds()), c);
        assert_eq!(c.succ(), Civil::start_of_day(2027, 1, 1));
        assert_eq!(c.succ().pred(), c);
    }
}
