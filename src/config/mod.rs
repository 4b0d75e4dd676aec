//! Configuration: embedded commented defaults (`config/default.toml`) -> an optional file ->
//! `FAL_PROXY_*` environment variables (`__` between nesting levels). Unknown keys are rejected,
//! and [`Config::validate`] checks everything else at start-up with messages that name the key.

mod load;
mod model;
mod secret;
mod validate;

pub use load::{
    ConfigSource, DEFAULT_TOML, defaults, embedded_schema, load, load_schemas, resolve_fal_key,
};
pub use model::*;
pub use secret::Secret;

/// A configuration problem, naming the key or file at fault.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A key has a value that cannot be used.
    #[error("config key `{key}`: {message}")]
    Invalid {
        /// Dotted key path, e.g. `fal.queue_url`.
        key: String,
        /// What is wrong and what would be right.
        message: String,
    },
    /// A file (config, schema, key file) could not be read or parsed.
    #[error("{path}: {message}")]
    File {
        /// The file at fault.
        path: String,
        /// What went wrong.
        message: String,
    },
    /// The layered sources could not be merged into a `Config` (unknown key, wrong type, ...).
    #[error("configuration: {0}")]
    Parse(String),
    /// No fal key was found outside mock mode.
    #[error(
        "no fal key: set FAL_KEY (or FAL_KEY_ID and FAL_KEY_SECRET), or point fal.key_file at a file holding it; or run with --mock"
    )]
    MissingFalKey,
}

impl ConfigError {
    /// Shorthand for an invalid key.
    pub fn invalid(key: impl Into<String>, message: impl Into<String>) -> Self {
        Self::Invalid {
            key: key.into(),
            message: message.into(),
        }
    }
}
