//! GCRA rate limits (`governor`): per plan, per class of call, keyed by client id; plus one
//! global limit on submits across all clients (the fal account's own concurrency).
//!
//! Memory stays bounded under identity rotation: [`RateLimits::prune`] (run periodically)
//! drops every key whose state is indistinguishable from a fresh one, then shrinks the maps.

use crate::hash::{FastMap, FastState};
use governor::clock::{Clock, DefaultClock};
use governor::middleware::StateInformationMiddleware;
use governor::state::keyed::DashMapStateStore;
use governor::state::{InMemoryState, NotKeyed};
use governor::{Quota, RateLimiter};
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use super::headers::{Policy, RateState, retry_after_secs};
use crate::config::{Config, RateConfig};

type Keyed = RateLimiter<
    Arc<str>,
    DashMapStateStore<Arc<str>, FastState>,
    DefaultClock,
    StateInformationMiddleware,
>;
type Global = RateLimiter<NotKeyed, InMemoryState, DefaultClock, StateInformationMiddleware>;

/// The classes of call that are limited separately.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    /// Submits and sync runs.
    Submit,
    /// Status, stream, result, cancel, `/v1/me`.
    Poll,
    /// Storage upload initiations.
    Upload,
}

impl Class {
    /// The policy name in the rate-limit headers.
    pub fn name(self) -> &'static str {
        match self {
            Self::Submit => "submit",
            Self::Poll => "poll",
            Self::Upload => "upload",
        }
    }

    fn index(self) -> usize {
        match self {
            Self::Submit => 0,
            Self::Poll => 1,
            Self::Upload => 2,
        }
    }
}

/// One limiter with the quota it enforces.
struct Limiter<L> {
    limiter: L,
    policy: Policy,
}

fn quota(rate: RateConfig) -> (Quota, u32, Duration) {
    let period = Duration::from_secs_f64(60.0 / rate.per_minute).max(Duration::from_nanos(1));
    let burst = NonZeroU32::new(rate.burst).unwrap_or(NonZeroU32::MIN);
    let quota = Quota::with_period(period)
        .unwrap_or_else(|| Quota::per_second(NonZeroU32::MIN))
        .allow_burst(burst);
    (quota, burst.get(), period)
}

fn keyed(class: Class, rate: RateConfig) -> Limiter<Keyed> {
    let (q, burst, period) = quota(rate);
    Limiter {
        limiter: RateLimiter::dashmap_with_clock_and_hasher(
            q,
            DefaultClock::default(),
            FastState::default(),
        )
        .with_middleware::<StateInformationMiddleware>(),
        policy: Policy::new(class.name(), burst, period),
    }
}

/// The outcome of a rate check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Allowed; the state goes into the `RateLimit` headers.
    Allowed(RateState),
    /// Refused; retry after this many seconds.
    Limited {
        /// The state to report (`r=0`).
        state: RateState,
        /// `Retry-After` seconds.
        retry_after: u64,
    },
}

/// Every rate limiter of the process.
pub struct RateLimits {
    plans: FastMap<String, [Limiter<Keyed>; 3]>,
    global_submit: Limiter<Global>,
    clock: DefaultClock,
}

impl std::fmt::Debug for RateLimits {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RateLimits")
            .field("plans", &self.plans.keys().collect::<Vec<_>>())
            .field("tracked_keys", &self.tracked_keys())
            .finish()
    }
}

impl RateLimits {
    /// Builds limiters for every plan in config.
    pub fn new(config: &Config) -> Self {
        let plans = config
            .plans
            .iter()
            .map(|(name, plan)| {
                (
                    name.clone(),
                    [
                        keyed(Class::Submit, plan.submit),
                        keyed(Class::Poll, plan.poll),
                        keyed(Class::Upload, plan.upload),
                    ],
                )
            })
            .collect();
        let (q, burst, period) = quota(config.limits.global_submit);
        Self {
            plans,
            global_submit: Limiter {
                limiter: RateLimiter::direct(q).with_middleware::<StateInformationMiddleware>(),
                policy: Policy::new(Class::Submit.name(), burst, period),
            },
            clock: DefaultClock::default(),
        }
    }

    /// Takes one call of `class` for `client` on `plan` (and, for submits, one of the global
    /// budget of submits). An unknown plan is judged as `default`.
    pub fn check(&self, plan: &str, class: Class, client: &Arc<str>) -> Verdict {
        let Some(limiters) = self.plans.get(plan).or_else(|| self.plans.get("default")) else {
            return Verdict::Allowed(Policy::new(class.name(), 1, Duration::ZERO).state(1));
        };
        let own = &limiters[class.index()];
        let state = match own.limiter.check_key(client) {
            Ok(snapshot) => own.policy.state(snapshot.remaining_burst_capacity()),
            Err(not_until) => {
                let wait = not_until.wait_time_from(self.clock.now());
                return Verdict::Limited {
                    state: own.policy.state(0),
                    retry_after: retry_after_secs(wait),
                };
            }
        };
        if class == Class::Submit
            && let Err(not_until) = self.global_submit.limiter.check()
        {
            let wait = not_until.wait_time_from(self.clock.now());
            return Verdict::Limited {
                state: self.global_submit.policy.state(0),
                retry_after: retry_after_secs(wait),
            };
        }
        Verdict::Allowed(state)
    }

    /// Forgets keys whose state equals a fresh one, and returns memory to the allocator.
    pub fn prune(&self) {
        for limiters in self.plans.values() {
            for l in limiters {
                l.limiter.retain_recent();
                l.limiter.shrink_to_fit();
            }
        }
    }

    /// How many client keys are tracked now (across plans and classes).
    pub fn tracked_keys(&self) -> usize {
        self.plans
            .values()
            .flat_map(|ls| ls.iter().map(|l| l.limiter.len()))
            .sum()
    }
}
