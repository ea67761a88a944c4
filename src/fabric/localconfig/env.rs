//! Fabric-style environment overrides.
//!
//! `ORDERER_GENERAL_LISTENPORT` overrides `General.ListenPort`: the variable's
//! `_`-separated parts are matched case-insensitively against the known key paths
//! (Fabric's keys contain no underscores). Known paths are those of the built-in
//! defaults plus those present in the file, so keys the file omits can still be set.
//! A variable that matches no key is ignored, as Fabric ignores it (with a warning
//! here, so a misspelt variable is seen).

use config::{Config, File, FileFormat, Map, Source, Value, ValueKind};

use super::keys::{self, Checked};
use super::{ConfigError, OrdererConfig};

const PREFIX: &str = "ORDERER_";

pub(super) fn load_with_overrides(
    yaml: &str,
    vars: impl IntoIterator<Item = (String, String)>,
) -> Result<OrdererConfig, ConfigError> {
    let defaults = Config::try_from(&OrdererConfig::default())?;
    let file = Checked(keys::normalize(
        File::from_str(yaml, FileFormat::Yaml).collect()?,
    )?);

    let mut paths = Vec::new();
    // From serde's view of the defaults: the config crate's drops empty lists.
    if let Ok(serde_json::Value::Object(known)) = serde_json::to_value(OrdererConfig::default()) {
        collect_json_paths(&known, &mut Vec::new(), &mut paths);
    }
    collect_paths(&file.0, &mut Vec::new(), &mut paths);

    let mut builder = Config::builder().add_source(defaults).add_source(file);
    for (name, value) in vars {
        let Some(rest) = name.strip_prefix(PREFIX) else {
            continue;
        };
        let parts: Vec<&str> = rest.split('_').collect();
        match paths.iter().find(|p| matches(p, &parts)) {
            Some(path) => builder = builder.set_override(path.join("."), value)?,
            None => {
                tracing::warn!(variable = %name, "environment variable matches no config key; ignored")
            }
        }
    }
    Ok(builder.build()?.try_deserialize()?)
}

fn matches(path: &[String], parts: &[&str]) -> bool {
    path.len() == parts.len()
        && path
            .iter()
            .zip(parts)
            .all(|(key, part)| key.eq_ignore_ascii_case(part))
}

fn collect_json_paths(
    map: &serde_json::Map<String, serde_json::Value>,
    prefix: &mut Vec<String>,
    out: &mut Vec<Vec<String>>,
) {
    for (key, value) in map {
        prefix.push(key.clone());
        match value {
            serde_json::Value::Object(inner) if !inner.is_empty() => {
                collect_json_paths(inner, prefix, out)
            }
            _ => out.push(prefix.clone()),
        }
        prefix.pop();
    }
}

fn collect_paths(map: &Map<String, Value>, prefix: &mut Vec<String>, out: &mut Vec<Vec<String>>) {
    for (key, value) in map {
        prefix.push(key.clone());
        match &value.kind {
            ValueKind::Table(inner) if !inner.is_empty() => collect_paths(inner, prefix, out),
            _ => out.push(prefix.clone()),
        }
        prefix.pop();
    }
}
