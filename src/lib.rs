//! fal-proxy: a server-side authenticating, validating proxy for fal.ai's queue API.
//!
//! See ARCHITECTURE.md for the bird's-eye view and the code map.

pub mod config;
pub mod cors;
pub mod error;
pub mod mock;
pub mod target;
pub mod validate;
