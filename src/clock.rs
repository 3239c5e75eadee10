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

pub use crate::query::format_datetime;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_known_instants() {
        assert_eq!(format_datetime(0), "1970-01-01 00:00:00.000Z");
        // 2024-02-29 12:34:56.789 UTC
        assert_eq!(format_datetime(1_709_210_096_789), "2024-02-29 12:34:56.789Z");
    }
}
