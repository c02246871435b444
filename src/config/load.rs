//! Loading the configuration: defaults, then the file, then the
//! environment; then the checks types alone cannot express
//! (`validate.rs`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::Config;

/// A configuration problem, always naming the key it is about.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config file {path}: {message}")]
    Syntax { path: PathBuf, message: String },
    #[error("invalid config: {key}: {message}")]
    Invalid { key: String, message: String },
}

pub(super) fn invalid(key: &str, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key: key.into(),
        message: message.into(),
    }
}

const ENV_PREFIX: &str = "CASEGATE_";

impl Config {
    /// Defaults, then `file` (if any), then the `CASEGATE_*__*` variables of `env`.
    pub fn load(
        file: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Config, ConfigError> {
        let text = file
            .map(|path| {
                std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                    path: path.to_owned(),
                    source,
                })
            })
            .transpose()?;
        Config::parse(file.zip(text.as_deref()), env)
    }

    /// [`Config::load`] on a file already read: `file` is its path (named in
    /// errors) and its text.
    pub fn parse(
        file: Option<(&Path, &str)>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Config, ConfigError> {
        let mut table = match file {
            Some((path, text)) => text
                .parse::<toml::Table>()
                .map_err(|e| ConfigError::Syntax {
                    path: path.to_owned(),
                    message: e.message().to_owned(),
                })?,
            None => toml::Table::new(),
        };
        let overrides: BTreeMap<String, String> = env
            .into_iter()
            .filter(|(k, _)| k.starts_with(ENV_PREFIX) && k.contains("__"))
            .collect();
        // Variables whose value read as a TOML number, boolean, date or
        // array: if the key wants a string (`CASEGATE_STORAGE__S3__BUCKET=2024`)
        // the raw text is used instead.
        let mut typed: BTreeMap<String, (String, String)> = BTreeMap::new();
        for (name, raw) in overrides {
            if let Some(dotted) = apply_env(&mut table, &name, &raw, false)? {
                typed.insert(dotted, (name, raw));
            }
        }
        let config: Config = loop {
            match serde_path_to_error::deserialize(toml::Value::Table(table.clone())) {
                Ok(config) => break config,
                Err(e) => {
                    let key = e.path().to_string();
                    match typed.remove(&key) {
                        Some((name, raw)) => {
                            apply_env(&mut table, &name, &raw, true)?;
                        }
                        None => return Err(invalid(&key, e.into_inner().message().to_owned())),
                    }
                }
            }
        };
        config.validate()?;
        Ok(config)
    }

    /// Directory of the `fs` object store.
    pub fn fs_root(&self) -> PathBuf {
        self.storage
            .fs_root
            .clone()
            .unwrap_or_else(|| self.server.data_dir.join("objects"))
    }
}

/// `CASEGATE_SERVER__LISTEN=…` → `server.listen`; nested sections use more
/// `__` (`CASEGATE_STORAGE__S3__BUCKET`). The value is read as a TOML value
/// when it parses as one (numbers, booleans, arrays), else — or when
/// `as_string` — as a string. Returns the dotted key when the value was
/// read as something other than a string.
fn apply_env(
    table: &mut toml::Table,
    name: &str,
    raw: &str,
    as_string: bool,
) -> Result<Option<String>, ConfigError> {
    let path: Vec<String> = name[ENV_PREFIX.len()..]
        .split("__")
        .map(str::to_ascii_lowercase)
        .collect();
    let dotted = path.join(".");
    if path.iter().any(String::is_empty) {
        return Err(invalid(&dotted, format!("malformed variable name {name}")));
    }
    let value = format!("v = {raw}")
        .parse::<toml::Table>()
        .ok()
        .and_then(|mut t| t.remove("v"))
        .filter(|_| !as_string)
        .unwrap_or_else(|| toml::Value::String(raw.to_owned()));
    let typed = (!value.is_str()).then(|| dotted.clone());
    let (last, sections) = path.split_last().ok_or_else(|| invalid(&dotted, "empty"))?;
    let mut cursor = table;
    for section in sections {
        let entry = cursor
            .entry(section.clone())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        cursor = entry
            .as_table_mut()
            .ok_or_else(|| invalid(&dotted, format!("{section} is not a section")))?;
    }
    cursor.insert(last.clone(), value);
    Ok(typed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::StorageBackend;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn defaults_match_spec() {
        let c = Config::load(None, env(&[])).unwrap();
        assert_eq!(c.server.listen.to_string(), "127.0.0.1:8443");
        assert_eq!(c.server.centre_listen.to_string(), "127.0.0.1:8444");
        assert_eq!(c.database.url, "sqlite://data/casegate.db");
        assert_eq!(c.keys.master_key_file, PathBuf::from("data/master.key"));
        assert_eq!(c.storage.backend, StorageBackend::Fs);
    }

    #[test]
    fn env_overrides_and_names_bad_keys() {
        let c = Config::load(
            None,
            env(&[
                ("CASEGATE_SERVER__LISTEN", "127.0.0.1:0"),
                ("CASEGATE_LIMITS__MAX_CONNECTIONS", "7"),
                ("CASEGATE_CA", "ignored.pem"),
            ]),
        )
        .unwrap();
        assert_eq!(c.server.listen.port(), 0);
        assert_eq!(c.limits.max_connections, 7);

        let err = Config::load(None, env(&[("CASEGATE_SERVER__LISTEN", "nowhere")]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("server.listen"), "{err}");
        let err = Config::load(
            None,
            env(&[("CASEGATE_UPLOADS__TOKEN_TTL_SECS", "99999999999999")]),
        )
        .unwrap_err();
        assert!(err.to_string().contains("uploads.token_ttl_secs"), "{err}");
        // A string key whose value looks like a number is still a string.
        let c = Config::load(
            None,
            env(&[
                ("CASEGATE_STORAGE__BACKEND", "s3"),
                ("CASEGATE_STORAGE__S3__ENDPOINT", "http://127.0.0.1:3900"),
                ("CASEGATE_STORAGE__S3__REGION", "garage"),
                ("CASEGATE_STORAGE__S3__BUCKET", "2024"),
                ("CASEGATE_STORAGE__S3__ACCESS_KEY", "1e5"),
                ("CASEGATE_STORAGE__S3__SECRET_KEY", "true"),
            ]),
        )
        .unwrap();
        let s3 = c.storage.s3.unwrap();
        assert_eq!(
            (s3.bucket.as_str(), s3.access_key.as_str()),
            ("2024", "1e5")
        );
        let err = Config::load(None, env(&[("CASEGATE_SERVER__LISEN", "1")]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("lisen"), "{err}");
        let err = Config::load(None, env(&[("CASEGATE_LIMITS__MAX_CONNECTIONS", "0")]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("limits.max_connections"), "{err}");
    }

    #[test]
    fn s3_parts_in_flight_are_bounded() {
        // An S3 store, with `storage.s3` keys added.
        let s3_with = |extra: &[(&str, &str)]| {
            let mut vars = env(&[
                ("CASEGATE_STORAGE__BACKEND", "s3"),
                ("CASEGATE_STORAGE__S3__ENDPOINT", "http://127.0.0.1:3900"),
                ("CASEGATE_STORAGE__S3__REGION", "garage"),
                ("CASEGATE_STORAGE__S3__BUCKET", "b"),
                ("CASEGATE_STORAGE__S3__ACCESS_KEY", "k"),
                ("CASEGATE_STORAGE__S3__SECRET_KEY", "s"),
            ]);
            for (k, v) in extra {
                vars.push((format!("CASEGATE_STORAGE__S3__{k}"), v.to_string()));
            }
            Config::load(None, vars)
        };
        let s3 = |parts: &str| match parts {
            "" => s3_with(&[]),
            parts => s3_with(&[("PARTS_IN_FLIGHT", parts)]),
        };
        let parts = |c: Config| c.storage.s3.map(|s3| s3.parts_in_flight);
        assert_eq!(parts(s3("").unwrap()), Some(2));
        assert_eq!(parts(s3("16").unwrap()), Some(16));
        for bad in ["0", "17", "-1", "two"] {
            let err = s3(bad).unwrap_err().to_string();
            assert!(err.contains("parts_in_flight"), "{bad}: {err}");
        }
        let c = s3("").unwrap();
        assert_eq!(c.storage.s3.map(|s3| s3.request_timeout_secs), Some(60));
        let err = s3_with(&[("REQUEST_TIMEOUT_SECS", "0")])
            .unwrap_err()
            .to_string();
        assert!(err.contains("request_timeout_secs"), "{err}");
    }

    #[test]
    fn connection_share_per_address() {
        let c = Config::load(None, env(&[])).unwrap();
        assert_eq!(c.limits.connections_per_address(), 64);
        let c = Config::load(None, env(&[("CASEGATE_LIMITS__MAX_CONNECTIONS", "40")])).unwrap();
        assert_eq!(c.limits.connections_per_address(), 8);
        let c = Config::load(None, env(&[("CASEGATE_LIMITS__MAX_CONNECTIONS", "2")])).unwrap();
        assert_eq!(c.limits.connections_per_address(), 2);
        let c = Config::load(
            None,
            env(&[("CASEGATE_LIMITS__MAX_CONNECTIONS_PER_ADDRESS", "3")]),
        )
        .unwrap();
        assert_eq!(c.limits.connections_per_address(), 3);
        for bad in ["0", "1025", "-1", "many"] {
            let err = Config::load(
                None,
                env(&[("CASEGATE_LIMITS__MAX_CONNECTIONS_PER_ADDRESS", bad)]),
            )
            .unwrap_err()
            .to_string();
            assert!(
                err.contains("limits.max_connections_per_address") && !err.contains('\n'),
                "{bad}: {err}"
            );
        }
    }

    #[test]
    fn example_file_equals_defaults() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/casegate.toml");
        let from_file = Config::load(Some(&path), env(&[])).unwrap();
        assert_eq!(
            format!("{from_file:?}"),
            format!("{:?}", Config::load(None, env(&[])).unwrap())
        );
    }
}
