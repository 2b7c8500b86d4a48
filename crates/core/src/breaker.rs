//! The circuit breaker of one endpoint, as a pure state machine on times the
//! caller passes in (ms since the epoch), so the engine can run it on its
//! injectable clock and store its state.
//!
//! - **Closed**: deliveries go. It opens after `consecutive_failures`
//!   failures in a row, or when, over the last `window_secs`, at least
//!   `minimum_attempts` attempts were made and the share that failed reached
//!   `failure_ratio`.
//! - **Open**: nothing goes until `cooldown_secs` have passed since it opened.
//! - **Half-open**: after the cool-down one delivery (the probe) goes; its
//!   success closes the breaker, its failure opens it again for another
//!   cool-down. Others wait while the probe is out.
//!
//! Written for Switchyard rather than taken from a crate: the breaker is part
//! of the product (its state is stored, shown, reset through the API and
//! carried across a node takeover), which the general-purpose crates do not
//! offer.

use serde::{Deserialize, Serialize};
use std::collections::VecDeque;

/// An endpoint's breaker settings (the API's `circuitBreaker`).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BreakerConfig {
    /// Failures in a row that open the breaker, 1 to 10,000.
    #[serde(default = "default_consecutive")]
    pub consecutive_failures: u32,
    /// The failed share of recent attempts that opens it, in (0, 1];
    /// `None` leaves only the consecutive count.
    #[serde(default)]
    pub failure_ratio: Option<f64>,
    /// How far back the ratio looks, 1 to 3,600 seconds.
    #[serde(default = "default_window")]
    pub window_secs: u32,
    /// Attempts in the window before the ratio is judged, 1 to 1,000,000.
    #[serde(default = "default_minimum")]
    pub minimum_attempts: u32,
    /// How long it stays open before a probe, 1 to 86,400 seconds.
    #[serde(default = "default_cooldown")]
    pub cooldown_secs: u32,
}

fn default_consecutive() -> u32 {
    5
}
fn default_window() -> u32 {
    60
}
fn default_minimum() -> u32 {
    20
}
fn default_cooldown() -> u32 {
    30
}

impl Default for BreakerConfig {
    fn default() -> Self {
        Self {
            consecutive_failures: default_consecutive(),
            failure_ratio: None,
            window_secs: default_window(),
            minimum_attempts: default_minimum(),
            cooldown_secs: default_cooldown(),
        }
    }
}

impl BreakerConfig {
    /// Checks every bound; the error names the field (camelCase, as the API
    /// spells it) and the problem.
    pub fn check(&self) -> Result<(), (&'static str, String)> {
        let range = |field, value: u32, min: u32, max: u32| {
            if (min..=max).contains(&value) {
                Ok(())
            } else {
                Err((field, format!("must be {min} to {max}")))
            }
        };
        range("consecutiveFailures", self.consecutive_failures, 1, 10_000)?;
        range("windowSecs", self.window_secs, 1, 3_600)?;
        range("minimumAttempts", self.minimum_attempts, 1, 1_000_000)?;
        range("cooldownSecs", self.cooldown_secs, 1, 86_400)?;
        if let Some(r) = self.failure_ratio
            && !(r > 0.0 && r <= 1.0)
        {
            return Err(("failureRatio", "must be above 0 and at most 1".to_owned()));
        }
        Ok(())
    }
}

/// Where a breaker is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum CircuitState {
    Closed,
    Open,
    HalfOpen,
}

impl CircuitState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Closed => "closed",
            Self::Open => "open",
            Self::HalfOpen => "halfOpen",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "closed" => Self::Closed,
            "open" => Self::Open,
            "halfOpen" => Self::HalfOpen,
            _ => return None,
        })
    }
}

/// What survives a restart or a takeover, and what the API shows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CircuitSnapshot {
    pub state: CircuitState,
    /// When it entered this state (ms).
    pub since: u64,
    /// The failure that opened it, or the probe's, when open.
    pub last_error: Option<String>,
    /// Failures in a row when the state was entered.
    pub consecutive_failures: u32,
}

impl CircuitSnapshot {
    pub fn closed(at: u64) -> Self {
        Self {
            state: CircuitState::Closed,
            since: at,
            last_error: None,
            consecutive_failures: 0,
        }
    }
}

/// What the breaker says about sending one delivery now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CircuitDecision {
    Send,
    /// Send it as the half-open probe (the breaker just moved to half-open).
    Probe,
    /// Not before this time (ms).
    WaitUntil(u64),
}

/// How long others wait while the probe is out before they look again, ms.
const PROBE_WAIT_MS: u64 = 1_000;
/// A probe with no result after this long (or the cool-down, if longer) is
/// taken as lost (its delivery was refused before sending, or its node
/// died), and another may go.
const PROBE_LOST_MS: u64 = 60_000;
/// Longest error text kept.
const MAX_ERROR: usize = 512;

/// One endpoint's breaker.
#[derive(Debug, Clone)]
pub struct Circuit {
    snapshot: CircuitSnapshot,
    consecutive: u32,
    /// Per-second counts of (successes, failures), oldest first.
    window: VecDeque<(u64, u32, u32)>,
    /// When the half-open probe went out, while it is out.
    probe_at: Option<u64>,
}

impl Circuit {
    /// A breaker resuming from a stored (or fresh) state.
    pub fn resume(snapshot: CircuitSnapshot) -> Self {
        Self {
            consecutive: snapshot.consecutive_failures,
            snapshot,
            window: VecDeque::new(),
            // A probe in flight when the state was stored is gone with its
            // node: a half-open breaker sends a new one.
            probe_at: None,
        }
    }

    pub fn snapshot(&self) -> &CircuitSnapshot {
        &self.snapshot
    }

    /// Until when nothing may go (ms), without changing anything: open
    /// inside its cool-down, or half-open with the probe out.
    pub fn blocked_until(&self, config: &BreakerConfig, now: u64) -> Option<u64> {
        match self.snapshot.state {
            CircuitState::Closed => None,
            CircuitState::Open => {
                let until = self.snapshot.since + u64::from(config.cooldown_secs) * 1_000;
                (now < until).then_some(until)
            }
            CircuitState::HalfOpen => {
                let lost_after = (u64::from(config.cooldown_secs) * 1_000).max(PROBE_LOST_MS);
                self.probe_at
                    .filter(|&at| now < at + lost_after)
                    .map(|_| now + PROBE_WAIT_MS)
            }
        }
    }

    /// May a delivery go now? Moving from open to half-open (the state
    /// changes) is reported by the snapshot's `since`.
    pub fn admit(&mut self, config: &BreakerConfig, now: u64) -> CircuitDecision {
        if let Some(until) = self.blocked_until(config, now) {
            return CircuitDecision::WaitUntil(until);
        }
        match self.snapshot.state {
            CircuitState::Closed => CircuitDecision::Send,
            CircuitState::Open => {
                self.enter(
                    CircuitState::HalfOpen,
                    now,
                    self.snapshot.last_error.clone(),
                );
                self.probe_at = Some(now);
                CircuitDecision::Probe
            }
            CircuitState::HalfOpen => {
                self.probe_at = Some(now);
                CircuitDecision::Probe
            }
        }
    }

    /// Counts one attempt's result; returns the new state when it changed.
    pub fn record(
        &mut self,
        config: &BreakerConfig,
        now: u64,
        success: bool,
        error: &str,
    ) -> Option<CircuitState> {
        self.record_sent_at(config, now, now, success, error)
    }

    /// As [`Self::record`], for a request sent at `sent_at` (ms): while
    /// half-open, only the probe decides, so a result of a request sent
    /// before the probe went out is counted but changes no state.
    pub fn record_sent_at(
        &mut self,
        config: &BreakerConfig,
        now: u64,
        sent_at: u64,
        success: bool,
        error: &str,
    ) -> Option<CircuitState> {
        if self.snapshot.state == CircuitState::HalfOpen
            && self.probe_at.is_some_and(|probe| sent_at < probe)
        {
            return None;
        }
        self.count(config, now, success);
        if success {
            self.consecutive = 0;
        } else {
            self.consecutive = self.consecutive.saturating_add(1);
        }
        let error = || Some(error.chars().take(MAX_ERROR).collect::<String>());
        match self.snapshot.state {
            CircuitState::HalfOpen => {
                self.probe_at = None;
                if success {
                    self.window.clear();
                    self.enter(CircuitState::Closed, now, None);
                    Some(CircuitState::Closed)
                } else {
                    self.enter(CircuitState::Open, now, error());
                    Some(CircuitState::Open)
                }
            }
            CircuitState::Closed if !success && self.trips(config) => {
                self.enter(CircuitState::Open, now, error());
                Some(CircuitState::Open)
            }
            // Results of deliveries sent before it opened change nothing.
            _ => None,
        }
    }

    fn trips(&self, config: &BreakerConfig) -> bool {
        if self.consecutive >= config.consecutive_failures {
            return true;
        }
        let Some(ratio) = config.failure_ratio else {
            return false;
        };
        let (ok, failed) = self.window.iter().fold((0u64, 0u64), |(o, f), &(_, s, x)| {
            (o + u64::from(s), f + u64::from(x))
        });
        let total = ok + failed;
        total >= u64::from(config.minimum_attempts) && failed as f64 >= ratio * total as f64
    }

    fn count(&mut self, config: &BreakerConfig, now: u64, success: bool) {
        let second = now / 1_000;
        let oldest = second.saturating_sub(u64::from(config.window_secs) - 1);
        while self.window.front().is_some_and(|&(s, _, _)| s < oldest) {
            self.window.pop_front();
        }
        match self.window.back_mut() {
            Some((s, ok, failed)) if *s == second => {
                if success {
                    *ok += 1;
                } else {
                    *failed += 1;
                }
            }
            _ => self
                .window
                .push_back((second, u32::from(success), u32::from(!success))),
        }
    }

    fn enter(&mut self, state: CircuitState, now: u64, last_error: Option<String>) {
        self.snapshot = CircuitSnapshot {
            state,
            since: now,
            last_error,
            consecutive_failures: self.consecutive,
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> BreakerConfig {
        BreakerConfig {
            consecutive_failures: 3,
            cooldown_secs: 10,
            ..BreakerConfig::default()
        }
    }

    #[test]
    fn opens_after_consecutive_failures_and_a_probe_decides() {
        let c = config();
        let mut b = Circuit::resume(CircuitSnapshot::closed(0));
        assert_eq!(b.record(&c, 1, false, "500"), None);
        assert_eq!(
            b.record(&c, 2, true, ""),
            None,
            "a success resets the count"
        );
        assert_eq!(b.record(&c, 3, false, "500"), None);
        assert_eq!(b.record(&c, 4, false, "500"), None);
        assert_eq!(b.record(&c, 5, false, "503"), Some(CircuitState::Open));
        assert_eq!(b.snapshot().last_error.as_deref(), Some("503"));
        assert_eq!(b.admit(&c, 6), CircuitDecision::WaitUntil(10_005));
        // Late results of deliveries already out change nothing.
        assert_eq!(b.record(&c, 7, true, ""), None);
        assert_eq!(b.snapshot().state, CircuitState::Open);
        assert_eq!(b.admit(&c, 10_005), CircuitDecision::Probe);
        assert_eq!(b.snapshot().state, CircuitState::HalfOpen);
        assert_eq!(b.admit(&c, 10_006), CircuitDecision::WaitUntil(11_006));
        // The probe fails: open for another cool-down.
        assert_eq!(
            b.record(&c, 10_100, false, "timeout"),
            Some(CircuitState::Open)
        );
        assert_eq!(b.admit(&c, 10_200), CircuitDecision::WaitUntil(20_100));
        assert_eq!(b.admit(&c, 20_100), CircuitDecision::Probe);
        assert_eq!(b.record(&c, 20_200, true, ""), Some(CircuitState::Closed));
        assert_eq!(b.admit(&c, 20_201), CircuitDecision::Send);
    }

    /// Found by a hostile review: a slow request sent before the breaker
    /// opened must not decide for the probe.
    #[test]
    fn only_the_probe_decides_a_half_open_breaker() {
        let c = config();
        let mut b = Circuit::resume(CircuitSnapshot::closed(0));
        for t in 1..=3 {
            b.record(&c, t, false, "500");
        }
        assert_eq!(b.admit(&c, 10_003), CircuitDecision::Probe);
        // A request sent at 2 (before the probe) succeeds late.
        assert_eq!(b.record_sent_at(&c, 10_500, 2, true, ""), None);
        assert_eq!(b.snapshot().state, CircuitState::HalfOpen);
        assert_eq!(
            b.record_sent_at(&c, 10_600, 10_003, false, "timeout"),
            Some(CircuitState::Open)
        );
    }

    #[test]
    fn opens_on_the_failure_ratio_over_the_window() {
        let c = BreakerConfig {
            consecutive_failures: 10_000,
            failure_ratio: Some(0.5),
            window_secs: 10,
            minimum_attempts: 10,
            cooldown_secs: 5,
        };
        let mut b = Circuit::resume(CircuitSnapshot::closed(0));
        // Alternating: half fail, but not before ten attempts.
        for i in 0..9u64 {
            assert_eq!(b.record(&c, i * 100, i % 2 == 0, "x"), None, "{i}");
        }
        assert_eq!(b.record(&c, 900, false, "x"), Some(CircuitState::Open));
        // Old results leave the window.
        let mut b = Circuit::resume(CircuitSnapshot::closed(0));
        for i in 0..9u64 {
            b.record(&c, i, false, "x");
        }
        for i in 0..9u64 {
            b.record(&c, 20_000 + i, true, "");
        }
        assert_eq!(b.record(&c, 20_010, false, "x"), None);
    }

    #[test]
    fn a_stored_state_resumes() {
        let c = config();
        let open = CircuitSnapshot {
            state: CircuitState::Open,
            since: 1_000,
            last_error: Some("500".into()),
            consecutive_failures: 3,
        };
        let mut b = Circuit::resume(open);
        assert_eq!(b.admit(&c, 2_000), CircuitDecision::WaitUntil(11_000));
        let mut half = Circuit::resume(CircuitSnapshot {
            state: CircuitState::HalfOpen,
            ..b.snapshot().clone()
        });
        assert_eq!(half.admit(&c, 2_000), CircuitDecision::Probe);
    }

    #[test]
    fn settings_are_bounded() {
        assert!(config().check().is_ok());
        let bad = BreakerConfig {
            failure_ratio: Some(1.5),
            ..config()
        };
        assert_eq!(bad.check().unwrap_err().0, "failureRatio");
        let bad = BreakerConfig {
            cooldown_secs: 0,
            ..config()
        };
        assert_eq!(bad.check().unwrap_err().0, "cooldownSecs");
        let parsed: Result<BreakerConfig, _> =
            serde_json::from_value(serde_json::json!({"consecutiveFailures": 2, "nope": 1}));
        assert!(parsed.is_err());
        let parsed: BreakerConfig =
            serde_json::from_value(serde_json::json!({"consecutiveFailures": 2})).unwrap();
        assert_eq!(parsed.cooldown_secs, 30);
    }
}
