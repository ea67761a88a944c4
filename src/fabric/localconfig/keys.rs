//! The keys a node config file may hold, checked as Fabric checks them: a key
//! the orderer does not know stops start-up (Fabric's loader refuses unused
//! keys), keys match case-insensitively, and a key given without a value
//! means its zero value (an empty text or list), not a parse error.
//!
//! The known keys are those of [`OrdererConfig`]'s defaults, so the schema
//! cannot drift from the structs that read it.

use std::collections::BTreeMap;

use config::{Map, Source, Value, ValueKind};

use super::{ConfigError, OrdererConfig};

/// A known key: a section holding more keys, or a value.
#[derive(Debug)]
enum Schema {
    Section(BTreeMap<String, Schema>),
    Text,
    List,
    /// Numbers, flags, optional values and free-form tables: a key without a
    /// value keeps its default.
    Other,
}

fn schema() -> BTreeMap<String, Schema> {
    fn of(value: &serde_json::Value) -> Schema {
        match value {
            serde_json::Value::Object(map) if !map.is_empty() => Schema::Section(
                map.iter()
                    .map(|(key, value)| (key.clone(), of(value)))
                    .collect(),
            ),
            serde_json::Value::String(_) => Schema::Text,
            serde_json::Value::Array(_) => Schema::List,
            _ => Schema::Other,
        }
    }
    match serde_json::to_value(OrdererConfig::default()).map(|v| of(&v)) {
        Ok(Schema::Section(top)) => top,
        _ => BTreeMap::new(),
    }
}

/// The file's settings with every key checked and spelled as Ordo reads it.
pub(super) fn normalize(file: Map<String, Value>) -> Result<Map<String, Value>, ConfigError> {
    let mut unknown = Vec::new();
    let mut clashes = Vec::new();
    let normalized = walk(file, &schema(), &mut Vec::new(), &mut unknown, &mut clashes);
    if let Some(key) = clashes.into_iter().next() {
        return Err(ConfigError::DuplicateKey { key });
    }
    if !unknown.is_empty() {
        unknown.sort();
        return Err(ConfigError::UnknownKeys { keys: unknown });
    }
    Ok(normalized)
}

fn walk(
    map: Map<String, Value>,
    schema: &BTreeMap<String, Schema>,
    path: &mut Vec<String>,
    unknown: &mut Vec<String>,
    clashes: &mut Vec<String>,
) -> Map<String, Value> {
    let mut out = Map::new();
    for (key, value) in map {
        let Some((name, known)) = schema
            .iter()
            .find(|(name, _)| name.eq_ignore_ascii_case(&key))
        else {
            unknown.push(dotted(path, &key));
            continue;
        };
        let value = match (known, value.kind) {
            (Schema::Section(inner), ValueKind::Table(table)) => {
                path.push(name.clone());
                let table = walk(table, inner, path, unknown, clashes);
                path.pop();
                Some(Value::new(None, ValueKind::Table(table)))
            }
            (Schema::Text, ValueKind::Nil) => Some(Value::new(None, String::new())),
            (Schema::List, ValueKind::Nil) => Some(Value::new(None, ValueKind::Array(Vec::new()))),
            (_, ValueKind::Nil) => None,
            (_, kind) => Some(Value::new(None, kind)),
        };
        if out.contains_key(name) {
            clashes.push(dotted(path, name));
        }
        if let Some(value) = value {
            out.insert(name.clone(), value);
        }
    }
    out
}

fn dotted(path: &[String], key: &str) -> String {
    let mut parts = path.to_vec();
    parts.push(key.to_string());
    parts.join(".")
}

/// Checked settings as a source for the `config` crate.
#[derive(Debug, Clone)]
pub(super) struct Checked(pub Map<String, Value>);

impl Source for Checked {
    fn clone_into_box(&self) -> Box<dyn Source + Send + Sync> {
        Box::new(self.clone())
    }

    fn collect(&self) -> Result<Map<String, Value>, config::ConfigError> {
        Ok(self.0.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use config::{File, FileFormat};

    fn keys_of(yaml: &str) -> Result<Map<String, Value>, ConfigError> {
        let file = File::from_str(yaml, FileFormat::Yaml)
            .collect()
            .expect("yaml");
        normalize(file)
    }

    #[test]
    fn unknown_keys_are_named_by_their_full_path() {
        let err = keys_of(
            "General:\n  ListenPort: 7050\n  Keepalive:\n    ServerTimeot: 20s\nBogus: 1\n",
        )
        .expect_err("unknown keys");
        match &err {
            ConfigError::UnknownKeys { keys } => assert_eq!(
                keys,
                &vec![
                    "Bogus".to_string(),
                    "General.Keepalive.ServerTimeot".to_string()
                ]
            ),
            other => panic!("{other}"),
        }
        let text = err.to_string();
        assert!(text.contains("General.Keepalive.ServerTimeot"), "{text}");
    }

    #[test]
    fn keys_match_case_insensitively_and_empty_values_are_zero() {
        let map =
            keys_of("general:\n  listenport: 7051\n  tls:\n    clientrootcas:\n  BootstrapFile:\n")
                .expect("known keys");
        let general = map["General"].clone().into_table().expect("table");
        assert_eq!(general["ListenPort"].clone().into_int().expect("int"), 7051);
        let tls = general["TLS"].clone().into_table().expect("table");
        assert!(tls["ClientRootCAs"]
            .clone()
            .into_array()
            .expect("list")
            .is_empty());
        // An optional key without a value is left unset.
        assert!(!general.contains_key("BootstrapFile"));
    }

    #[test]
    fn a_key_given_twice_in_different_cases_is_refused() {
        let err = keys_of("General:\n  ListenPort: 1\n  listenport: 2\n").expect_err("twice");
        assert!(err.to_string().contains("General.ListenPort"), "{err}");
    }

    #[test]
    fn free_form_sections_keep_their_keys() {
        let map =
            keys_of("General:\n  BCCSP:\n    PKCS11:\n      Library: /lib.so\n      AltID: x\n")
                .expect("PKCS11 keys are the module's");
        assert!(map.contains_key("General"));
    }
}
