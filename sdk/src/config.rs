//! Loading a service's TOML configuration (feature `config`): read the file,
//! parse with every key checked (unknown keys and wrong types are errors that
//! name the key), then the service's own value checks. Errors name the file.

use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;

/// Why a configuration could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("invalid config {path}: {message}")]
    Invalid { path: PathBuf, message: String },
}

/// Parses TOML text and runs `check` on the result.
pub fn parse_toml<T: DeserializeOwned>(
    text: &str,
    check: impl FnOnce(&T) -> Result<(), String>,
) -> Result<T, String> {
    let value: T = toml::from_str(text).map_err(|e| e.to_string().trim().to_string())?;
    check(&value)?;
    Ok(value)
}

/// Reads and parses a TOML file (see [`parse_toml`]).
pub fn load_toml<T: DeserializeOwned>(
    path: &Path,
    check: impl FnOnce(&T) -> Result<(), String>,
) -> Result<T, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    parse_toml(&text, check).map_err(|message| ConfigError::Invalid {
        path: path.to_path_buf(),
        message,
    })
}
