//! UTC calendar arithmetic for date macros and timestamp formatting.
//!
//! Written by hand (no chrono) because we only need the proleptic Gregorian
//! calendar in UTC: whole 400-year cycles (146,097 days each) are skipped
//! arithmetically, and the at most 399 remaining years and 12 months are
//! walked with a loop. That keeps the code obviously correct while still
//! running in constant time for any `i64` input.

use crate::query::ast::DateMacro;
use serde_json::Value;

const MS_PER_DAY: i64 = 86_400_000;
const DAYS_PER_400_YEARS: i64 = 146_097;
/// Days from 1970-01-01 to 2000-01-01; 2000 starts a 400-year cycle.
const DAYS_1970_TO_2000: i64 = 10_957;

fn is_leap(year: i64) -> bool {
    (year % 4 == 0 && year % 100 != 0) || year % 400 == 0
}

fn year_len(year: i64) -> i64 {
    if is_leap(year) {
        366
    } else {
        365
    }
}

fn month_len(year: i64, month: u32) -> i64 {
    match month {
        2 if is_leap(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 → (year, month 1-12, day 1-31).
pub(crate) fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let since_2000 = days - DAYS_1970_TO_2000;
    let cycles = since_2000.div_euclid(DAYS_PER_400_YEARS);
    let mut rem = since_2000.rem_euclid(DAYS_PER_400_YEARS);
    // Leap-year pattern of year Y equals that of 2000 + (Y - 2000) mod 400.
    let mut year = 2000 + cycles * 400;
    while rem >= year_len(year) {
        rem -= year_len(year);
        year += 1;
    }
    let mut month = 1;
    while month < 12 && rem >= month_len(year, month) {
        rem -= month_len(year, month);
        month += 1;
    }
    (year, month, rem as u32 + 1)
}

/// (year, month 1-12, day 1-31) → days since 1970-01-01.
pub(crate) fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let cycles = (year - 2000).div_euclid(400);
    let cycle_start = 2000 + cycles * 400;
    let mut days = DAYS_1970_TO_2000 + cycles * DAYS_PER_400_YEARS;
    for y in cycle_start..year {
        days += year_len(y);
    }
    for m in 1..month.min(13) {
        days += month_len(year, m);
    }
    days + i64::from(day) - 1
}

/// Formats epoch milliseconds as PocketBase's `YYYY-MM-DD HH:MM:SS.mmmZ`
/// (UTC). That format sorts lexicographically in time order for years
/// 0000-9999, which is why dates can be compared as plain strings. Years
/// outside that range are printed with more digits or a sign (never panics).
pub fn format_datetime(millis: i64) -> String {
    let days = millis.div_euclid(MS_PER_DAY);
    let ms_of_day = millis.rem_euclid(MS_PER_DAY);
    let (y, m, d) = civil_from_days(days);
    let secs = ms_of_day / 1000;
    format!(
        "{:04}-{:02}-{:02} {:02}:{:02}:{:02}.{:03}Z",
        y,
        m,
        d,
        secs / 3600,
        (secs / 60) % 60,
        secs % 60,
        ms_of_day % 1000
    )
}

/// Epoch millis of 00:00:00.000 on the given day (saturating, so absurd
/// clocks near the `i64` limits cannot overflow).
fn start_of_day_ms(days: i64) -> i64 {
    days.saturating_mul(MS_PER_DAY)
}

/// The value of a date macro at instant `now` (epoch millis, UTC).
///
/// Instants (`@now`, `@todayStart`, ...) are strings in the
/// [`format_datetime`] format; components (`@year`, `@weekday`, ...) are
/// numbers. `@yesterday`/`@tomorrow` are `@now` ∓ 24 hours (same time of
/// day), and the `*End` macros are the last millisecond of their period.
pub(crate) fn macro_value(m: DateMacro, now: i64) -> Value {
    let days = now.div_euclid(MS_PER_DAY);
    let ms_of_day = now.rem_euclid(MS_PER_DAY);
    let (year, month, day) = civil_from_days(days);
    let instant = |ms: i64| Value::String(format_datetime(ms));
    let number = |n: i64| Value::from(n);
    let next_month = if month == 12 {
        days_from_civil(year + 1, 1, 1)
    } else {
        days_from_civil(year, month + 1, 1)
    };
    match m {
        DateMacro::Now => instant(now),
        DateMacro::Yesterday => instant(now.saturating_sub(MS_PER_DAY)),
        DateMacro::Tomorrow => instant(now.saturating_add(MS_PER_DAY)),
        DateMacro::Second => number(ms_of_day / 1000 % 60),
        DateMacro::Minute => number(ms_of_day / 60_000 % 60),
        DateMacro::Hour => number(ms_of_day / 3_600_000),
        DateMacro::Day => number(i64::from(day)),
        DateMacro::Month => number(i64::from(month)),
        // 1970-01-01 was a Thursday (4 with Sunday = 0).
        DateMacro::Weekday => number((days + 4).rem_euclid(7)),
        DateMacro::Year => number(year),
        DateMacro::TodayStart => instant(start_of_day_ms(days)),
        DateMacro::TodayEnd => instant(start_of_day_ms(days + 1).saturating_sub(1)),
        DateMacro::MonthStart => instant(start_of_day_ms(days_from_civil(year, month, 1))),
        DateMacro::MonthEnd => instant(start_of_day_ms(next_month).saturating_sub(1)),
        DateMacro::YearStart => instant(start_of_day_ms(days_from_civil(year, 1, 1))),
        DateMacro::YearEnd => instant(start_of_day_ms(days_from_civil(year + 1, 1, 1)).saturating_sub(1)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_known_instants() {
        assert_eq!(format_datetime(0), "1970-01-01 00:00:00.000Z");
        assert_eq!(format_datetime(-1), "1969-12-31 23:59:59.999Z");
        // Leap day 2024-02-29T12:34:56.789Z.
        let leap = 1_709_164_800_000 + ((12 * 60 + 34) * 60 + 56) * 1000 + 789;
        assert_eq!(format_datetime(leap), "2024-02-29 12:34:56.789Z");
        assert_eq!(format_datetime(1_709_251_200_000), "2024-03-01 00:00:00.000Z");
        // 2000 is a leap year (divisible by 400) ...
        assert_eq!(format_datetime(951_782_400_000), "2000-02-29 00:00:00.000Z");
        // ... 2100 is not (divisible by 100).
        assert_eq!(format_datetime(4_102_444_799_999), "2099-12-31 23:59:59.999Z");
        assert_eq!(format_datetime(4_102_444_800_000), "2100-01-01 00:00:00.000Z");
        assert_eq!(format_datetime(4_107_542_399_999), "2100-02-28 23:59:59.999Z");
        assert_eq!(format_datetime(4_107_542_400_000), "2100-03-01 00:00:00.000Z");
    }

    #[test]
    fn extreme_instants_do_not_panic() {
        for ms in [i64::MIN, i64::MIN + 1, i64::MAX, -62_135_596_800_000] {
            assert!(!format_datetime(ms).is_empty());
            for m in DateMacro::ALL {
                let _ = macro_value(m, ms);
            }
        }
        assert_eq!(format_datetime(-62_135_596_800_000), "0001-01-01 00:00:00.000Z");
    }

    #[test]
    fn civil_round_trip() {
        for days in (-800_000..800_000).step_by(997) {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, m, d), days);
        }
    }

    #[test]
    fn macros_at_fixed_now() {
        // Saturday 2024-06-15 12:00:00.000Z
        let now = 1_718_452_800_000;
        let s = |m| macro_value(m, now);
        assert_eq!(s(DateMacro::Now), "2024-06-15 12:00:00.000Z");
        assert_eq!(s(DateMacro::Yesterday), "2024-06-14 12:00:00.000Z");
        assert_eq!(s(DateMacro::Tomorrow), "2024-06-16 12:00:00.000Z");
        assert_eq!(s(DateMacro::TodayStart), "2024-06-15 00:00:00.000Z");
        assert_eq!(s(DateMacro::TodayEnd), "2024-06-15 23:59:59.999Z");
        assert_eq!(s(DateMacro::MonthStart), "2024-06-01 00:00:00.000Z");
        assert_eq!(s(DateMacro::MonthEnd), "2024-06-30 23:59:59.999Z");
        assert_eq!(s(DateMacro::YearStart), "2024-01-01 00:00:00.000Z");
        assert_eq!(s(DateMacro::YearEnd), "2024-12-31 23:59:59.999Z");
        assert_eq!(s(DateMacro::Weekday), 6);
        assert_eq!(s(DateMacro::Year), 2024);
        assert_eq!(s(DateMacro::Month), 6);
        assert_eq!(s(DateMacro::Day), 15);
        assert_eq!(s(DateMacro::Hour), 12);
        assert_eq!(s(DateMacro::Minute), 0);
        assert_eq!(s(DateMacro::Second), 0);
        // December rolls the month end into the next year.
        let dec = macro_value(DateMacro::MonthEnd, 1_702_728_000_000); // 2023-12-16
        assert_eq!(dec, "2023-12-31 23:59:59.999Z");
    }
}
