//! fal-proxy: a server-side authenticating, validating proxy for fal.ai's queue API.
//!
//! See ARCHITECTURE.md for the bird's-eye view, the request path and the code map. The binary
//! (`main.rs`) only wires [`config`], [`app::build`] and [`server::serve`] together; the tests
//! run exactly the same app.

pub mod app;
pub mod around;
pub mod ascii;
pub mod auth;
pub mod body;
pub mod cli;

pub mod concurrency;
pub mod config;
pub mod cors;
pub mod drain;
pub mod error;
pub mod gate;
pub mod hash;
pub mod landing;
pub mod limits;
pub mod log;
pub mod mock;
pub mod playground;
pub mod relay;
pub mod routes;
pub mod server;
pub mod store;
pub mod target;
#[cfg(test)]
mod test_support;
pub mod timer;
pub mod upstream;
pub mod validate;
