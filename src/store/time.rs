//! UTC day and month boundaries from unix seconds (proleptic Gregorian calendar), computed
//! with plain integer arithmetic: days since 1970-01-01 <-> (year, month, day).
//!
//! Every function is total: arithmetic saturates instead of overflowing, so even absurd
//! timestamps never panic.

use super::Timestamp;

const SECS_PER_DAY: i64 = 86_400;
/// Days in a 400-year cycle of the Gregorian calendar.
const DAYS_PER_ERA: i64 = 146_097;
/// Days from 0000-03-01 to 1970-01-01. Counting years from March puts the leap day last.
const EPOCH_FROM_MARCH_0000: i64 = 719_468;

/// The civil date `(year, month 1..=12, day 1..=31)` of a count of days since 1970-01-01.
pub fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let shifted = days.saturating_add(EPOCH_FROM_MARCH_0000);
    let era = shifted.div_euclid(DAYS_PER_ERA);
    let day_of_era = shifted.rem_euclid(DAYS_PER_ERA); // 0..=146_096
    // Years into the era, correcting for the leap days of every 4th, 100th and 400th year.
    let year_of_era =
        (day_of_era - day_of_era / 1_460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    // Months counted from March (0) to February (11); their lengths follow a 153-days-per-5 pattern.
    let march_month = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * march_month + 2) / 5 + 1;
    let month = if march_month < 10 {
        march_month + 3
    } else {
        march_month - 9
    };
    let year = era
        .saturating_mul(400)
        .saturating_add(year_of_era)
        .saturating_add(i64::from(month <= 2));
    (year, month, day)
}

/// Days since 1970-01-01 of a civil date (`month` 1..=12, `day` 1..=31).
pub fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let march_year = if month <= 2 {
        year.saturating_sub(1)
    } else {
        year
    };
    let era = march_year.div_euclid(400);
    let year_of_era = march_year.rem_euclid(400);
    let march_month = if month > 2 { month - 3 } else { month + 9 };
    let day_of_year = (153 * march_month + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era.saturating_mul(DAYS_PER_ERA)
        .saturating_add(day_of_era)
        .saturating_sub(EPOCH_FROM_MARCH_0000)
}

/// 00:00 UTC of the day of `now`.
pub fn day_start(now: Timestamp) -> Timestamp {
    now.div_euclid(SECS_PER_DAY).saturating_mul(SECS_PER_DAY)
}

/// The next UTC midnight after `now` (when the daily budget resets).
pub fn next_day_start(now: Timestamp) -> Timestamp {
    day_start(now).saturating_add(SECS_PER_DAY)
}

/// 00:00 UTC on the first of the month of `now`.
pub fn month_start(now: Timestamp) -> Timestamp {
    let (year, month, _) = civil_from_days(now.div_euclid(SECS_PER_DAY));
    days_from_civil(year, month, 1).saturating_mul(SECS_PER_DAY)
}

/// 00:00 UTC on the first of the month after `now` (when the monthly budget resets).
pub fn next_month_start(now: Timestamp) -> Timestamp {
    let (year, month, _) = civil_from_days(now.div_euclid(SECS_PER_DAY));
    let (year, month) = if month == 12 {
        (year.saturating_add(1), 1)
    } else {
        (year, month + 1)
    };
    days_from_civil(year, month, 1).saturating_mul(SECS_PER_DAY)
}

/// `now` as RFC 3339 UTC, e.g. `2026-05-01T00:00:00Z` (for messages and headers).
pub fn format_utc(now: Timestamp) -> String {
    let (year, month, day) = civil_from_days(now.div_euclid(SECS_PER_DAY));
    let secs = now.rem_euclid(SECS_PER_DAY);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        secs / 3_600,
        secs % 3_600 / 60,
        secs % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Unix seconds of a UTC date and time.
    fn ts(year: i64, month: i64, day: i64, hms: (i64, i64, i64)) -> Timestamp {
        days_from_civil(year, month, day) * SECS_PER_DAY + hms.0 * 3_600 + hms.1 * 60 + hms.2
    }

    #[test]
    fn known_dates() {
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(-1), (1969, 12, 31));
        // Cross-checked with `date -u -d @...`.
        assert_eq!(ts(2000, 3, 1, (0, 0, 0)), 951_868_800);
        assert_eq!(ts(2024, 2, 29, (12, 0, 0)), 1_709_208_000);
        assert_eq!(ts(2038, 1, 19, (3, 14, 7)), 2_147_483_647);
        assert_eq!(format_utc(1_709_208_000), "2024-02-29T12:00:00Z");
        assert_eq!(format_utc(-1), "1969-12-31T23:59:59Z");
    }

    #[test]
    fn round_trips_every_day_for_800_years() {
        let start = days_from_civil(1800, 1, 1);
        let mut expected = (1800, 1, 1);
        for days in start..start + 800 * 366 {
            assert_eq!(civil_from_days(days), expected, "day {days}");
            assert_eq!(days_from_civil(expected.0, expected.1, expected.2), days);
            let (y, m, d) = expected;
            let leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
            let len = match m {
                2 if leap => 29,
                2 => 28,
                4 | 6 | 9 | 11 => 30,
                _ => 31,
            };
            expected = match (d == len, m == 12) {
                (false, _) => (y, m, d + 1),
                (true, false) => (y, m + 1, 1),
                (true, true) => (y + 1, 1, 1),
            };
        }
    }

    #[test]
    fn day_boundaries() {
        let noon = ts(2025, 12, 31, (12, 0, 0));
        assert_eq!(day_start(noon), ts(2025, 12, 31, (0, 0, 0)));
        assert_eq!(next_day_start(noon), ts(2026, 1, 1, (0, 0, 0)));
        let midnight = ts(2026, 1, 1, (0, 0, 0));
        assert_eq!(day_start(midnight), midnight);
        assert_eq!(next_day_start(midnight - 1), midnight);
        assert_eq!(next_day_start(midnight), ts(2026, 1, 2, (0, 0, 0)));
        assert_eq!(day_start(-1), -SECS_PER_DAY);
    }

    #[test]
    fn month_boundaries_and_leap_years() {
        let cases = [
            // (moment, start of its month, start of the next month)
            ((2024, 2, 29), (2024, 2, 1), (2024, 3, 1)),
            ((2023, 2, 28), (2023, 2, 1), (2023, 3, 1)),
            ((2000, 2, 29), (2000, 2, 1), (2000, 3, 1)),
            ((1900, 2, 28), (1900, 2, 1), (1900, 3, 1)),
            ((2025, 12, 31), (2025, 12, 1), (2026, 1, 1)),
            ((2026, 1, 1), (2026, 1, 1), (2026, 2, 1)),
            ((2026, 4, 30), (2026, 4, 1), (2026, 5, 1)),
            ((1969, 12, 31), (1969, 12, 1), (1970, 1, 1)),
        ];
        for ((y, m, d), (sy, sm, sd), (ny, nm, nd)) in cases {
            for hms in [(0, 0, 0), (23, 59, 59)] {
                let now = ts(y, m, d, hms);
                assert_eq!(month_start(now), ts(sy, sm, sd, (0, 0, 0)), "{y}-{m}-{d}");
                assert_eq!(
                    next_month_start(now),
                    ts(ny, nm, nd, (0, 0, 0)),
                    "{y}-{m}-{d}"
                );
            }
        }
        // The last second of a month still belongs to it.
        let first = ts(2024, 3, 1, (0, 0, 0));
        assert_eq!(next_month_start(first - 1), first);
        assert_eq!(month_start(first - 1), ts(2024, 2, 1, (0, 0, 0)));
    }

    #[test]
    fn extreme_timestamps_do_not_panic() {
        for now in [i64::MIN, i64::MIN + 1, i64::MAX - 1, i64::MAX] {
            let _ = (day_start(now), next_day_start(now), month_start(now));
            let _ = (next_month_start(now), format_utc(now));
        }
    }
}
