//! The IETF rate-limit headers (draft-ietf-httpapi-ratelimit-headers), formatted. PURE.
//!
//! `RateLimit-Policy: "submit";q=5;w=30` names the policy: `q` calls per window of `w`
//! seconds (for GCRA: the burst, and the time it takes to refill completely).
//! `RateLimit: "submit";r=3;t=12`: `r` calls remain now; `t` seconds until fully refilled.

use http::{HeaderMap, HeaderName, HeaderValue};
use std::time::Duration;

/// One class's state after a decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateState {
    /// Policy name (`submit`, `poll`, `upload`).
    pub name: &'static str,
    /// Burst size (quota units per window).
    pub quota: u32,
    /// Seconds for a full refill.
    pub window_secs: u64,
    /// Calls left now.
    pub remaining: u32,
    /// Seconds until fully refilled.
    pub reset_secs: u64,
}

impl RateState {
    /// Builds the state from a GCRA quota (`burst`, one cell per `period`) and what remains.
    pub fn from_gcra(name: &'static str, burst: u32, period: Duration, remaining: u32) -> Self {
        let window = period.as_secs_f64() * f64::from(burst);
        let missing = burst.saturating_sub(remaining);
        Self {
            name,
            quota: burst,
            window_secs: window.ceil() as u64,
            remaining,
            reset_secs: (period.as_secs_f64() * f64::from(missing)).ceil() as u64,
        }
    }

    /// The `RateLimit-Policy` value.
    pub fn policy_header(&self) -> String {
        item(self.name, "q", u64::from(self.quota), "w", self.window_secs)
    }

    /// The `RateLimit` value.
    pub fn limit_header(&self) -> String {
        item(
            self.name,
            "r",
            u64::from(self.remaining),
            "t",
            self.reset_secs,
        )
    }
}

/// `"<name>";<a>=<x>;<b>=<y>`, written without the formatting machinery (two of these go on
/// every proxied response).
fn item(name: &str, a: &str, x: u64, b: &str, y: u64) -> String {
    let mut numbers = itoa::Buffer::new();
    let mut out = String::with_capacity(name.len() + 48);
    out.push('"');
    out.push_str(name);
    out.push_str("\";");
    out.push_str(a);
    out.push('=');
    out.push_str(numbers.format(x));
    out.push(';');
    out.push_str(b);
    out.push('=');
    out.push_str(numbers.format(y));
    out
}

/// `RateLimit-Policy`.
const POLICY: HeaderName = HeaderName::from_static("ratelimit-policy");
/// `RateLimit`.
const LIMIT: HeaderName = HeaderName::from_static("ratelimit");

/// Sets `RateLimit-Policy` and `RateLimit` on a response.
pub fn insert(headers: &mut HeaderMap, state: &RateState) {
    // Class names and numbers are always valid header text; the check costs nothing.
    for (name, value) in [
        (POLICY, state.policy_header()),
        (LIMIT, state.limit_header()),
    ] {
        if let Ok(value) = HeaderValue::try_from(value) {
            headers.insert(name, value);
        }
    }
}

/// `Retry-After` seconds for a wait: rounded up, at least 1.
pub fn retry_after_secs(wait: Duration) -> u64 {
    (wait.as_secs_f64().ceil() as u64).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats() {
        let s = RateState::from_gcra("submit", 5, Duration::from_secs(6), 3);
        assert_eq!(s.policy_header(), "\"submit\";q=5;w=30");
        assert_eq!(s.limit_header(), "\"submit\";r=3;t=12");
        assert_eq!(retry_after_secs(Duration::from_millis(1)), 1);
        assert_eq!(retry_after_secs(Duration::from_millis(2500)), 3);
    }
}
