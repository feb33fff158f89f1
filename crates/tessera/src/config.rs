//! Loads the layered configuration: defaults -> TOML file -> `TESSERA__SECTION__KEY`
//! variables -> flags (and their `TESSERA_LISTEN`-style variables), validated
//! once into [`Config`].

use std::path::Path;

use anyhow::{Context as _, bail};
use tessera_core::config::{Config, RawConfig, Secret};

use crate::cli::ServeArgs;

pub fn load(args: &ServeArgs) -> anyhow::Result<Config> {
    let file = match &args.config {
        Some(path) => read_file(path)?,
        None => RawConfig::default(),
    };
    let env = from_env(std::env::vars())?;
    let flags = RawConfig {
        listen: args.listen.clone(),
        data_dir: args.data_dir.clone(),
        database_url: args.database_url.clone(),
        redis_url: args.redis_url.clone(),
        nats_url: args.nats_url.clone(),
        log_format: args.log_format.clone(),
        ..RawConfig::default()
    };
    let mut flags = flags;
    flags.engine.model_memory_mb = args.model_memory_mb;
    let raw = file.overlay(env).overlay(flags);
    let admin_key =
        std::env::var("TESSERA_ADMIN_KEY").ok().filter(|k| !k.is_empty()).map(Secret::new);
    Config::from_raw(raw, admin_key, resolve_secret)
        .map_err(|e| anyhow::anyhow!("invalid configuration: {e}"))
}

fn read_file(path: &Path) -> anyhow::Result<RawConfig> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read config file {}", path.display()))?;
    toml::from_str(&text).with_context(|| format!("invalid config file {}", path.display()))
}

/// Builds a layer from `TESSERA__SECTION__KEY=value` variables; values are
/// read as TOML scalars when they parse as one, else as strings.
fn from_env(vars: impl Iterator<Item = (String, String)>) -> anyhow::Result<RawConfig> {
    let mut root = toml::Table::new();
    for (name, value) in vars {
        let Some(path) = name.strip_prefix("TESSERA__") else { continue };
        let parts: Vec<String> = path.split("__").map(str::to_ascii_lowercase).collect();
        let parsed = toml::from_str::<toml::Table>(&format!("v = {value}"))
            .ok()
            .and_then(|mut t| t.remove("v"))
            .unwrap_or(toml::Value::String(value));
        let mut table = &mut root;
        for (i, part) in parts.iter().enumerate() {
            if i + 1 == parts.len() {
                table.insert(part.clone(), parsed.clone());
            } else {
                let entry = table
                    .entry(part.clone())
                    .or_insert_with(|| toml::Value::Table(toml::Table::new()));
                let Some(t) = entry.as_table_mut() else {
                    bail!("environment variable {name} conflicts with another")
                };
                table = t;
            }
        }
    }
    root.try_into().map_err(|e| anyhow::anyhow!("invalid TESSERA__* environment variable: {e}"))
}

/// Resolves `env:NAME` and `file:/path` secret references.
fn resolve_secret(reference: &str) -> Result<Secret, String> {
    if let Some(name) = reference.strip_prefix("env:") {
        return std::env::var(name)
            .map(Secret::new)
            .map_err(|_| format!("environment variable {name} is not set"));
    }
    if let Some(path) = reference.strip_prefix("file:") {
        return std::fs::read_to_string(path)
            .map(|s| Secret::new(s.trim().to_owned()))
            .map_err(|e| format!("cannot read secret file {path}: {e}"));
    }
    Err("secrets must be references: env:NAME or file:/path".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(v: &[(&str, &str)]) -> impl Iterator<Item = (String, String)> {
        v.iter().map(|(a, b)| (a.to_string(), b.to_string())).collect::<Vec<_>>().into_iter()
    }

    #[test]
    fn env_layer_reaches_nested_keys_and_types() {
        let raw = from_env(vars(&[
            ("TESSERA__LISTEN", "0.0.0.0:9000"),
            ("TESSERA__AUTH__KEY_CACHE_TTL_MS", "500"),
            ("TESSERA__AUTH__JWKS_URL", "http://127.0.0.1:1/jwks"),
            ("TESSERA_LISTEN", "ignored: handled by clap"),
        ]))
        .unwrap();
        assert_eq!(raw.listen.as_deref(), Some("0.0.0.0:9000"));
        assert_eq!(raw.auth.key_cache_ttl_ms, Some(500));
        assert_eq!(raw.auth.jwks_url.as_deref(), Some("http://127.0.0.1:1/jwks"));
    }

    #[test]
    fn unknown_env_keys_are_errors() {
        assert!(from_env(vars(&[("TESSERA__LISTN", "x")])).is_err());
    }

    #[test]
    fn secrets_must_be_references() {
        assert!(resolve_secret("plain-secret").is_err());
        assert!(resolve_secret("env:TESSERA_SURELY_UNSET_VAR").is_err());
    }
}
