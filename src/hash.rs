//! The hasher of this proxy's own maps: foldhash, seeded at random per map.
//!
//! The standard library's SipHash costs ~100 instructions per short key, and a proxied call
//! makes a dozen lookups (rate limiter, in-flight count, job store, budgets, schema property
//! names, endpoint allowlist): callgrind put SipHash at 5-6% of all user-space instructions of
//! a submit. foldhash is what `hashbrown` itself defaults to. It is not a cryptographic hash,
//! but every `RandomState` draws a fresh random seed, so colliding keys cannot be precomputed,
//! and the keys these maps hold are chosen by the operator (endpoints, plans), by fal (request
//! ids) or are authenticated client ids. The one map keyed by what a client may pick freely,
//! idempotency keys, stays on SipHash.

/// A `HashMap` with the [`FastState`] hasher.
pub type FastMap<K, V> = std::collections::HashMap<K, V, FastState>;
/// A `HashSet` with the [`FastState`] hasher.
pub type FastSet<K> = std::collections::HashSet<K, FastState>;
/// foldhash's randomly seeded builder.
pub type FastState = foldhash::fast::RandomState;
