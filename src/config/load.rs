//! Reading configuration sources: the embedded defaults, a file, the environment, schema files
//! and the fal key. This is the only configuration code that does I/O.

use figment::Figment;
use figment::providers::{Env, Format, Toml};
use serde_json::Value;
use std::path::{Path, PathBuf};

use super::{Config, ConfigError, Secret};

/// The commented defaults shipped in `config/`, embedded in the binary.
pub const DEFAULT_TOML: &str = include_str!("../../config/default.toml");

/// The schema files shipped in `config/schemas/`, embedded so the defaults work anywhere.
const EMBEDDED_SCHEMAS: &[(&str, &str)] = &[
    (
        "schemas/nano-banana-pro-edit.json",
        include_str!("../../config/schemas/nano-banana-pro-edit.json"),
    ),
    (
        "schemas/nano-banana-pro.json",
        include_str!("../../config/schemas/nano-banana-pro.json"),
    ),
];

/// Where the configuration came from; relative schema paths resolve against it.
#[derive(Debug, Clone)]
pub enum ConfigSource {
    /// Only the embedded defaults (plus environment).
    Embedded,
    /// A file given with `--config` (plus environment).
    File(PathBuf),
}

/// Loads defaults -> `file` -> `FAL_PROXY_*` env, rejecting unknown keys, then validates.
pub fn load(file: Option<&Path>) -> Result<(Config, ConfigSource), ConfigError> {
    let mut figment = Figment::from(Toml::string(DEFAULT_TOML));
    let source = match file {
        Some(path) => {
            if !path.is_file() {
                return Err(ConfigError::File {
                    path: path.display().to_string(),
                    message: "no such config file".into(),
                });
            }
            figment = figment.merge(Toml::file_exact(path));
            ConfigSource::File(path.to_path_buf())
        }
        None => ConfigSource::Embedded,
    };
    figment = figment.merge(Env::prefixed("FAL_PROXY_").split("__"));
    let config: Config = figment
        .extract()
        .map_err(|e| ConfigError::Parse(describe_figment_error(&e)))?;
    config.validate()?;
    Ok((config, source))
}

/// The embedded defaults alone (no file, no environment): what tests start from.
pub fn defaults() -> Result<Config, ConfigError> {
    let config: Config = Figment::from(Toml::string(DEFAULT_TOML))
        .extract()
        .map_err(|e| ConfigError::Parse(describe_figment_error(&e)))?;
    config.validate()?;
    Ok(config)
}

/// Figment's errors can carry several causes; list them all, each with its key and source.
fn describe_figment_error(error: &figment::Error) -> String {
    error
        .clone()
        .into_iter()
        .map(|e| {
            let mut line = e.kind.to_string();
            if !e.path.is_empty() {
                line = format!("key `{}`: {line}", e.path.join("."));
            }
            if let Some(meta) = &e.metadata {
                line.push_str(&format!(" (in {})", meta.name));
                if let Some(src) = &meta.source {
                    line.push_str(&format!(" {src}"));
                }
            }
            line
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// An embedded schema by its relative path (`schemas/....json`).
pub fn embedded_schema(relative: &Path) -> Option<&'static str> {
    let wanted = relative.to_str()?;
    EMBEDDED_SCHEMAS
        .iter()
        .find(|(name, _)| *name == wanted)
        .map(|(_, text)| *text)
}

/// Reads and parses every endpoint's schema file. Relative paths resolve against the config
/// file's folder; a relative path with no such file there falls back to the embedded copy.
pub fn load_schemas(
    config: &Config,
    source: &ConfigSource,
) -> Result<Vec<(String, Value)>, ConfigError> {
    config
        .endpoints
        .iter()
        .map(|endpoint| {
            let (name, text) = read_schema(&endpoint.schema, source)?;
            let value: Value = serde_json::from_str(&text).map_err(|e| ConfigError::File {
                path: name.clone(),
                message: format!("not valid JSON: {e}"),
            })?;
            Ok((endpoint.id.clone(), value))
        })
        .collect()
}

fn read_schema(path: &Path, source: &ConfigSource) -> Result<(String, String), ConfigError> {
    let on_disk = match (path.is_absolute(), source) {
        (true, _) => Some(path.to_path_buf()),
        (false, ConfigSource::File(file)) => {
            let candidate = file.parent().unwrap_or(Path::new(".")).join(path);
            candidate.is_file().then_some(candidate)
        }
        (false, ConfigSource::Embedded) => None,
    };
    if let Some(file) = on_disk {
        let text = std::fs::read_to_string(&file).map_err(|e| ConfigError::File {
            path: file.display().to_string(),
            message: format!("cannot read schema: {e}"),
        })?;
        return Ok((file.display().to_string(), text));
    }
    match embedded_schema(path) {
        Some(text) => Ok((format!("(embedded) {}", path.display()), text.to_string())),
        None => Err(ConfigError::File {
            path: path.display().to_string(),
            message:
                "schema file not found (relative paths resolve against the config file's folder)"
                    .into(),
        }),
    }
}

/// The fal key: `FAL_KEY`, else `FAL_KEY_ID` + `FAL_KEY_SECRET` (joined with `:`), else the
/// contents of `fal.key_file`. `Ok(None)` when there is none at all.
pub fn resolve_fal_key(
    config: &Config,
    env: impl Fn(&str) -> Option<String>,
) -> Result<Option<Secret>, ConfigError> {
    let non_empty = |name: &str| env(name).filter(|v| !v.trim().is_empty());
    if let Some(key) = non_empty("FAL_KEY") {
        return Ok(Some(Secret::new(key.trim())));
    }
    match (non_empty("FAL_KEY_ID"), non_empty("FAL_KEY_SECRET")) {
        (Some(id), Some(secret)) => {
            return Ok(Some(Secret::new(format!(
                "{}:{}",
                id.trim(),
                secret.trim()
            ))));
        }
        (Some(_), None) | (None, Some(_)) => {
            return Err(ConfigError::invalid(
                "FAL_KEY_ID / FAL_KEY_SECRET",
                "both must be set together",
            ));
        }
        (None, None) => {}
    }
    if let Some(path) = &config.fal.key_file {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError::File {
            path: path.display().to_string(),
            message: format!("fal.key_file cannot be read: {e}"),
        })?;
        let key = text.trim();
        if key.is_empty() {
            return Err(ConfigError::File {
                path: path.display().to_string(),
                message: "fal.key_file is empty".into(),
            });
        }
        return Ok(Some(Secret::new(key)));
    }
    Ok(None)
}
