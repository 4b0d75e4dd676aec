//! Limits: who may do what, now. Rate limits (GCRA), jobs in flight, and the cost of a job
//! for budgets (the budget bookkeeping itself lives in the store).

pub mod cost;
pub mod headers;
pub mod inflight;
pub mod rate;

pub use headers::RateState;
pub use inflight::{InFlight, Slot};
pub use rate::{Class, RateLimits, Verdict};
