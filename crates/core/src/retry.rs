//! The retry schedule and the delay before each retry.

use std::time::Duration;

/// Delays between attempts: entry `i` is the wait after failed attempt `i + 1`.
/// The number of entries is the number of retries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetrySchedule(Vec<Duration>);

/// The default: 5s, 5m, 30m, 2h, 5h, 10h, 10h.
impl Default for RetrySchedule {
    fn default() -> Self {
        Self(
            [5, 300, 1_800, 7_200, 18_000, 36_000, 36_000]
                .into_iter()
                .map(Duration::from_secs)
                .collect(),
        )
    }
}

/// Longest wait a `Retry-After` header can impose.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(6 * 3600);

impl RetrySchedule {
    pub fn new(delays: Vec<Duration>) -> Self {
        Self(delays)
    }

    /// Parses `5s,5m,30m,2h` or plain seconds `1,1,1`; `ms` is accepted for tests.
    pub fn parse(s: &str) -> Result<Self, String> {
        let mut delays = Vec::new();
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            delays.push(parse_duration(part)?);
        }
        if delays.len() > 50 {
            return Err("a retry schedule may have at most 50 entries".into());
        }
        Ok(Self(delays))
    }

    pub fn retries(&self) -> usize {
        self.0.len()
    }

    pub fn delays(&self) -> &[Duration] {
        &self.0
    }

    /// The wait after the `attempts_made`-th failed attempt, or `None` when the
    /// delivery has used all its retries. `jitter` is in [-1, 1] and spreads the
    /// wait by up to ±10 %; `retry_after` from the receiver can only lengthen it.
    pub fn next_delay(
        &self,
        attempts_made: u32,
        jitter: f64,
        retry_after: Option<Duration>,
    ) -> Option<Duration> {
        let base = *self.0.get((attempts_made as usize).checked_sub(1)?)?;
        let spread = base.as_secs_f64() * 0.1 * jitter.clamp(-1.0, 1.0);
        let jittered = Duration::from_secs_f64((base.as_secs_f64() + spread).max(0.0));
        Some(match retry_after {
            Some(wait) => jittered.max(wait.min(MAX_RETRY_AFTER)),
            None => jittered,
        })
    }
}

fn parse_duration(part: &str) -> Result<Duration, String> {
    let bad = || format!("invalid retry delay '{part}': use e.g. 5s, 5m, 2h or plain seconds");
    let (number, unit_ms) = if let Some(n) = part.strip_suffix("ms") {
        (n, 1)
    } else if let Some(n) = part.strip_suffix('s') {
        (n, 1_000)
    } else if let Some(n) = part.strip_suffix('m') {
        (n, 60_000)
    } else if let Some(n) = part.strip_suffix('h') {
        (n, 3_600_000)
    } else {
        (part, 1_000)
    };
    let n: u64 = number.trim().parse().map_err(|_| bad())?;
    let ms = n.checked_mul(unit_ms).ok_or_else(bad)?;
    if ms > 7 * 24 * 3_600_000 {
        return Err(format!("retry delay '{part}' is longer than a week"));
    }
    Ok(Duration::from_millis(ms))
}

/// Reads a `Retry-After` value, given in seconds or as an HTTP date (RFC 9110
/// §10.2.3); a date already past asks for no wait. A receiver's skewed clock
/// can do no harm beyond `MAX_RETRY_AFTER`, because the value is capped there
/// and can only lengthen the scheduled wait.
pub fn parse_retry_after(value: &str, now: std::time::SystemTime) -> Option<Duration> {
    let value = value.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn parses_schedules() {
        assert_eq!(RetrySchedule::parse("1,1,1").unwrap().retries(), 3);
        let s = RetrySchedule::parse("5s, 5m,2h,250ms").unwrap();
        assert_eq!(
            s.delays(),
            &[
                Duration::from_secs(5),
                Duration::from_secs(300),
                Duration::from_secs(7200),
                Duration::from_millis(250)
            ]
        );
        assert!(RetrySchedule::parse("5x").is_err());
        assert!(RetrySchedule::parse("").unwrap().retries() == 0);
        assert_eq!(RetrySchedule::default().retries(), 7);
    }

    #[test]
    fn exhausts_after_last_entry() {
        let s = RetrySchedule::parse("1,2").unwrap();
        assert_eq!(s.next_delay(1, 0.0, None), Some(Duration::from_secs(1)));
        assert_eq!(s.next_delay(2, 0.0, None), Some(Duration::from_secs(2)));
        assert_eq!(s.next_delay(3, 0.0, None), None);
        assert_eq!(s.next_delay(0, 0.0, None), None);
    }

    #[test]
    fn retry_after_only_lengthens_within_bounds() {
        let s = RetrySchedule::parse("10").unwrap();
        assert_eq!(
            s.next_delay(1, 0.0, Some(Duration::from_secs(1))),
            Some(Duration::from_secs(10))
        );
        assert_eq!(
            s.next_delay(1, 0.0, Some(Duration::from_secs(60))),
            Some(Duration::from_secs(60))
        );
        assert_eq!(
            s.next_delay(1, 0.0, Some(Duration::from_secs(10 * 24 * 3600))),
            Some(MAX_RETRY_AFTER)
        );
        let now = std::time::UNIX_EPOCH + Duration::from_secs(1_445_412_400);
        assert_eq!(
            parse_retry_after(" 120 ", now),
            Some(Duration::from_secs(120))
        );
        // 2015-10-21 07:26:40 UTC is `now`: the date is 80 s later.
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now),
            Some(Duration::from_secs(80))
        );
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:20:00 GMT", now),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after("soon", now), None);
        assert_eq!(parse_retry_after("-5", now), None);
    }

    proptest! {
        #[test]
        fn jitter_stays_within_ten_percent(secs in 1u64..100_000, jitter in -1.0f64..=1.0) {
            let s = RetrySchedule::new(vec![Duration::from_secs(secs)]);
            let d = s.next_delay(1, jitter, None).unwrap().as_secs_f64();
            prop_assert!(d >= secs as f64 * 0.9 - 1e-6 && d <= secs as f64 * 1.1 + 1e-6);
        }
    }
}
