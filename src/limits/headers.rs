//! The IETF rate-limit headers (draft-ietf-httpapi-ratelimit-headers), formatted. PURE but for
//! a per-thread copy of the last `RateLimit` value, which only saves rendering it again.
//!
//! `RateLimit-Policy: "submit";q=5;w=30` names the policy: `q` calls per window of `w`
//! seconds (for GCRA: the burst, and the time it takes to refill completely).
//! `RateLimit: "submit";r=3;t=12`: `r` calls remain now; `t` seconds until fully refilled.

use http::{HeaderMap, HeaderName, HeaderValue};
use std::cell::RefCell;
use std::time::Duration;

/// One limiter's policy: its name, its GCRA quota, and its `RateLimit-Policy` value, rendered
/// once (it goes on every proxied response and never changes).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    name: &'static str,
    burst: u32,
    period: Duration,
    header: HeaderValue,
}

impl Policy {
    /// The policy `name` of a GCRA quota: up to `burst` calls at once, one more per `period`.
    pub fn new(name: &'static str, burst: u32, period: Duration) -> Self {
        let window = (period.as_secs_f64() * f64::from(burst)).ceil() as u64;
        Self {
            name,
            burst,
            period,
            header: item(name, "q", u64::from(burst), "w", window),
        }
    }

    /// The state after a decision that left `remaining` calls.
    pub fn state(&self, remaining: u32) -> RateState {
        let missing = self.burst.saturating_sub(remaining);
        RateState {
            name: self.name,
            policy: self.header.clone(),
            remaining,
            reset_secs: (self.period.as_secs_f64() * f64::from(missing)).ceil() as u64,
        }
    }
}

/// One class's state after a decision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RateState {
    /// Policy name (`submit`, `poll`, `upload`).
    pub name: &'static str,
    /// The `RateLimit-Policy` value.
    pub policy: HeaderValue,
    /// Calls left now.
    pub remaining: u32,
    /// Seconds until fully refilled.
    pub reset_secs: u64,
}

impl RateState {
    /// The `RateLimit` value. A client polling slower than its limit refills sees the same
    /// value call after call (`r` one below the burst), so each thread keeps the last value it
    /// rendered and hands out a clone (a reference count) while the inputs stay the same.
    pub fn limit_header(&self) -> HeaderValue {
        thread_local! {
            static LAST: RefCell<Option<(&'static str, u32, u64, HeaderValue)>> =
                const { RefCell::new(None) };
        }
        let key = (self.name, self.remaining, self.reset_secs);
        LAST.with_borrow_mut(|last| match last {
            Some((name, remaining, reset, value)) if (*name, *remaining, *reset) == key => {
                value.clone()
            }
            _ => {
                let value = item(
                    self.name,
                    "r",
                    u64::from(self.remaining),
                    "t",
                    self.reset_secs,
                );
                *last = Some((self.name, self.remaining, self.reset_secs, value.clone()));
                value
            }
        })
    }
}

/// `"<name>";<a>=<x>;<b>=<y>`, written without the formatting machinery into a buffer of
/// exactly its length (so the header value takes it over without another allocation).
fn item(name: &str, a: &str, x: u64, b: &str, y: u64) -> HeaderValue {
    let (mut xs, mut ys) = (itoa::Buffer::new(), itoa::Buffer::new());
    let (x, y) = (xs.format(x), ys.format(y));
    let parts: [&str; 9] = ["\"", name, "\";", a, "=", x, ";", b, "="];
    let mut out = Vec::with_capacity(parts.iter().map(|p| p.len()).sum::<usize>() + y.len());
    for part in parts {
        out.extend_from_slice(part.as_bytes());
    }
    out.extend_from_slice(y.as_bytes());
    // Policy names are fixed words and the rest are digits, `=`, `;` and `"`: always valid.
    HeaderValue::try_from(out).unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// `RateLimit-Policy`.
const POLICY: HeaderName = HeaderName::from_static("ratelimit-policy");
/// `RateLimit`.
const LIMIT: HeaderName = HeaderName::from_static("ratelimit");

/// Sets `RateLimit-Policy` and `RateLimit` on a response.
pub fn insert(headers: &mut HeaderMap, state: &RateState) {
    headers.insert(POLICY, state.policy.clone());
    headers.insert(LIMIT, state.limit_header());
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
        let s = Policy::new("submit", 5, Duration::from_secs(6)).state(3);
        assert_eq!(s.policy, "\"submit\";q=5;w=30");
        assert_eq!(s.limit_header(), "\"submit\";r=3;t=12");
        let mut headers = HeaderMap::new();
        insert(&mut headers, &s);
        assert_eq!(headers["ratelimit-policy"], "\"submit\";q=5;w=30");
        assert_eq!(headers["ratelimit"], "\"submit\";r=3;t=12");
        let big = Policy::new("poll", u32::MAX, Duration::from_secs(1)).state(0);
        assert_eq!(big.policy, "\"poll\";q=4294967295;w=4294967295");
        assert_eq!(big.limit_header(), "\"poll\";r=0;t=4294967295");
        assert_eq!(retry_after_secs(Duration::from_millis(1)), 1);
        assert_eq!(retry_after_secs(Duration::from_millis(2500)), 3);
    }

    /// The value kept for a repeat is only ever handed out for the same name and numbers.
    #[test]
    fn a_repeated_state_gets_the_same_value_and_any_change_a_new_one() {
        let submit = Policy::new("submit", 5, Duration::from_secs(6));
        let poll = Policy::new("poll", 5, Duration::from_secs(6));
        let cases = [
            (submit.state(4), "\"submit\";r=4;t=6"),
            (submit.state(4), "\"submit\";r=4;t=6"),
            (poll.state(4), "\"poll\";r=4;t=6"),
            (submit.state(4), "\"submit\";r=4;t=6"),
            (submit.state(3), "\"submit\";r=3;t=12"),
            (submit.state(3), "\"submit\";r=3;t=12"),
            (
                Policy::new("submit", 5, Duration::from_secs(7)).state(3),
                "\"submit\";r=3;t=14",
            ),
            (submit.state(4), "\"submit\";r=4;t=6"),
        ];
        for (state, want) in cases {
            assert_eq!(state.limit_header(), want);
        }
    }
}
