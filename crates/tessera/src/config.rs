//! Loads the layered configuration: defaults -> TOML file -> `TESSERA__SECTION__KEY`
//! variables -> flags (and their `TESSERA_LISTEN`-style variables). Each layer
//! is a TOML table; the tables are deep-merged (a later layer's value wins,
//! tables merge key by key) and deserialized once into [`RawConfig`], then
//! validated once into [`Config`]. So every field a file can set, the
//! environment and flags can override, with no list of fields to keep.

use std::path::Path;

use anyhow::{Context as _, bail};
use tessera_core::config::{Config, RawConfig, Secret};

use crate::cli::ServeArgs;

pub fn load(args: &ServeArgs) -> anyhow::Result<Config> {
    let mut merged = match &args.config {
        Some(path) => read_file(path)?,
        None => toml::Table::new(),
    };
    merge(&mut merged, env_table(std::env::vars())?);
    merge(&mut merged, flags_table(args));
    let raw = parse(merged)?;
    let admin_key =
        std::env::var("TESSERA_ADMIN_KEY").ok().filter(|k| !k.is_empty()).map(Secret::new);
    Config::from_raw(raw, admin_key, resolve_secret)
        .map_err(|e| anyhow::anyhow!("invalid configuration: {e}"))
}

fn read_file(path: &Path) -> anyhow::Result<toml::Table> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read config file {}", path.display()))?;
    let table: toml::Table =
        toml::from_str(&text).with_context(|| format!("invalid config file {}", path.display()))?;
    // Checked alone first, so an error names the file.
    parse(table.clone()).with_context(|| format!("invalid config file {}", path.display()))?;
    Ok(table)
}

/// The merged layers as the configuration's raw form.
fn parse(table: toml::Table) -> anyhow::Result<RawConfig> {
    table.try_into().map_err(|e| anyhow::anyhow!("{e}"))
}

/// Puts `top` over `base`: tables merge key by key, any other value of
/// `top` replaces `base`'s.
fn merge(base: &mut toml::Table, top: toml::Table) {
    for (key, value) in top {
        match (base.get_mut(&key), value) {
            (Some(toml::Value::Table(b)), toml::Value::Table(t)) => merge(b, t),
            (_, v) => {
                base.insert(key, v);
            }
        }
    }
}

/// The flags that were given, as a layer.
fn flags_table(args: &ServeArgs) -> toml::Table {
    let mut t = toml::Table::new();
    let mut put = |key: &str, v: Option<toml::Value>| {
        if let Some(v) = v {
            t.insert(key.to_owned(), v);
        }
    };
    let text = |s: &Option<String>| s.clone().map(toml::Value::String);
    let path = |p: &Option<std::path::PathBuf>| {
        p.as_ref().map(|p| toml::Value::String(p.display().to_string()))
    };
    put("listen", text(&args.listen));
    put("data_dir", path(&args.data_dir));
    put("database_url", text(&args.database_url));
    put("redis_url", text(&args.redis_url));
    put("nats_url", text(&args.nats_url));
    put("log_format", text(&args.log_format));
    if let Some(mb) = args.model_memory_mb {
        let mut engine = toml::Table::new();
        engine.insert("model_memory_mb".into(), toml::Value::Integer(mb as i64));
        t.insert("engine".into(), toml::Value::Table(engine));
    }
    t
}

/// Builds a layer from `TESSERA__SECTION__KEY=value` variables; values are
/// read as TOML scalars when they parse as one, else as strings.
fn env_table(vars: impl Iterator<Item = (String, String)>) -> anyhow::Result<toml::Table> {
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
    // Checked alone first, so an error names the environment.
    parse(root.clone())
        .map_err(|e| anyhow::anyhow!("invalid TESSERA__* environment variable: {e}"))?;
    Ok(root)
}

#[cfg(test)]
fn from_env(vars: impl Iterator<Item = (String, String)>) -> anyhow::Result<RawConfig> {
    parse(env_table(vars)?)
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
    fn later_layers_win_key_by_key_and_sections_merge() {
        let mut merged: toml::Table = toml::from_str(
            "listen = \"0.0.0.0:1\"\nlog_format = \"json\"\n[engine]\nqueue_capacity = 3\nmax_batch_size = 8\n[engine.models.m]\nmax_batch_size = 4",
        )
        .unwrap();
        let env = env_table(vars(&[
            ("TESSERA__LISTEN", "127.0.0.1:2"),
            ("TESSERA__ENGINE__QUEUE_CAPACITY", "9"),
            ("TESSERA__ENGINE__MODELS__M__QUEUE_CAPACITY", "7"),
            ("TESSERA__BREAKER__PROBES", "5"),
        ]))
        .unwrap();
        merge(&mut merged, env);
        let raw = parse(merged).unwrap();
        assert_eq!(raw.listen.as_deref(), Some("127.0.0.1:2"));
        assert_eq!(raw.log_format.as_deref(), Some("json"));
        assert_eq!(raw.engine.queue_capacity, Some(9));
        assert_eq!(raw.engine.max_batch_size, Some(8));
        let m = &raw.engine.models["m"];
        assert_eq!((m.max_batch_size, m.queue_capacity), (Some(4), Some(7)));
        assert_eq!(raw.breaker.probes, Some(5));
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
