//! Wall-clock time and the one date format the wire API uses.
//!
//! PocketBase prints every date as UTC `YYYY-MM-DD HH:MM:SS.mmmZ`; SDKs parse that
//! exact layout, and because it is fixed-width, string order equals time order,
//! which lets indexes and filters compare dates as plain strings.

use std::time::{SystemTime, UNIX_EPOCH};

/// Milliseconds since the Unix epoch (UTC). A clock before 1970 reads as 0.
pub fn now_millis() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// The current time in the wire format.
pub fn now_string() -> String {
    format_datetime(now_millis())
}

/// Formats milliseconds since the epoch as `YYYY-MM-DD HH:MM:SS.mmmZ` (UTC).
///
/// Uses the days-to-civil algorithm (proleptic Gregorian calendar) so no date
/// crate is needed for the one format we print.
pub fn format_datetime(millis: i64) -> String {
    let days = millis.div_euclid(86_400_000);
    let ms_of_day = millis.rem_euclid(86_400_000);
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

/// Converts days since 1970-01-01 into (year, month, day).
pub fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_known_instants() {
        assert_eq!(format_datetime(0), "1970-01-01 00:00:00.000Z");
        // 2024-02-29 12:34:56.789 UTC
        assert_eq!(
            format_datetime(1_709_210_096_789),
            "2024-02-29 12:34:56.789Z"
        );
        assert_eq!(format_datetime(-1), "1969-12-31 23:59:59.999Z");
    }
}
