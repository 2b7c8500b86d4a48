//! Time as the API shows it (RFC 3339) and as the store keeps it (Unix milliseconds).

use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

pub fn now_ms() -> u64 {
    let nanos = OffsetDateTime::now_utc().unix_timestamp_nanos();
    (nanos / 1_000_000).max(0) as u64
}

/// RFC 3339 with millisecond precision and a `Z` suffix, as Svix returns it.
pub fn format_ms(unix_ms: u64) -> String {
    let dt = OffsetDateTime::from_unix_timestamp_nanos(unix_ms as i128 * 1_000_000)
        .unwrap_or(OffsetDateTime::UNIX_EPOCH);
    let ms = dt.millisecond();
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
        dt.year(),
        dt.month() as u8,
        dt.day(),
        dt.hour(),
        dt.minute(),
        dt.second(),
        ms
    )
}

/// Parses an RFC 3339 timestamp (any offset) into Unix milliseconds.
pub fn parse_rfc3339_ms(s: &str) -> Option<u64> {
    let dt = OffsetDateTime::parse(s.trim(), &Rfc3339).ok()?;
    let ms = dt.unix_timestamp_nanos() / 1_000_000;
    u64::try_from(ms).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_and_parses() {
        let s = format_ms(1_614_265_330_123);
        assert_eq!(s, "2021-02-25T15:02:10.123Z");
        assert_eq!(parse_rfc3339_ms(&s), Some(1_614_265_330_123));
        assert_eq!(
            parse_rfc3339_ms("2021-02-25T16:02:10.123+01:00"),
            Some(1_614_265_330_123)
        );
        assert_eq!(parse_rfc3339_ms("yesterday"), None);
    }
}
