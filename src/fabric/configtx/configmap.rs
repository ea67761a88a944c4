//! A config tree flattened into a map of paths, the shape in which Fabric
//! compares a config update with the current config.
//!
//! Every group, value and policy becomes one element keyed by its kind and its
//! path (`/Channel/Orderer/BatchSize`). A group element keeps its child maps,
//! whose keys say which children it has; rebuilding a tree takes each child from
//! the map, so an update that replaces a group also decides its membership.

use std::collections::BTreeMap;
use std::fmt;

use crate::fabric::protos::common::{ConfigGroup, ConfigPolicy, ConfigValue};

/// The name of the root group in paths.
pub const ROOT: &str = "Channel";

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Kind {
    Group,
    Value,
    Policy,
}

/// Where an element sits in the tree.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct ElementKey {
    pub kind: Kind,
    /// Names from the root down, the root included.
    pub path: Vec<String>,
}

impl ElementKey {
    fn child(&self, kind: Kind, name: &str) -> ElementKey {
        let mut path = self.path.clone();
        path.push(name.to_string());
        ElementKey { kind, path }
    }

    pub fn root() -> ElementKey {
        ElementKey {
            kind: Kind::Group,
            path: vec![ROOT.to_string()],
        }
    }

    /// The path of the group that holds this element (the root holds itself).
    pub fn parent_path(&self) -> &[String] {
        &self.path[..self.path.len().saturating_sub(1).max(1)]
    }

    /// `/Channel/Orderer/BatchSize`.
    pub fn path_string(&self) -> String {
        format!("/{}", self.path.join("/"))
    }

    /// The element as Fabric's errors name it: `[Value]  /Channel/Orderer/BatchSize`.
    pub fn fabric_name(&self) -> String {
        let prefix = match self.kind {
            Kind::Group => "[Group]  ",
            Kind::Value => "[Value]  ",
            Kind::Policy => "[Policy] ",
        };
        format!("{prefix}{}", self.path_string())
    }
}

impl fmt::Display for ElementKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match self.kind {
            Kind::Group => "group",
            Kind::Value => "value",
            Kind::Policy => "policy",
        };
        write!(f, "{kind} {}", self.path_string())
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum Element {
    Group(ConfigGroup),
    Value(ConfigValue),
    Policy(ConfigPolicy),
}

impl Element {
    pub fn version(&self) -> u64 {
        match self {
            Element::Group(g) => g.version,
            Element::Value(v) => v.version,
            Element::Policy(p) => p.version,
        }
    }

    pub fn mod_policy(&self) -> &str {
        match self {
            Element::Group(g) => &g.mod_policy,
            Element::Value(v) => &v.mod_policy,
            Element::Policy(p) => &p.mod_policy,
        }
    }
}

pub type ConfigMap = BTreeMap<ElementKey, Element>;

/// Flattens the tree under `root` (the `Channel` group).
pub fn flatten(root: &ConfigGroup) -> ConfigMap {
    let mut map = ConfigMap::new();
    add_group(&mut map, ElementKey::root(), root);
    map
}

fn add_group(map: &mut ConfigMap, key: ElementKey, group: &ConfigGroup) {
    for (name, value) in &group.values {
        map.insert(key.child(Kind::Value, name), Element::Value(value.clone()));
    }
    for (name, policy) in &group.policies {
        map.insert(
            key.child(Kind::Policy, name),
            Element::Policy(policy.clone()),
        );
    }
    for (name, child) in &group.groups {
        add_group(map, key.child(Kind::Group, name), child);
    }
    map.insert(key, Element::Group(group.clone()));
}

/// Rebuilds the tree from the root group down. Fails on a child that a group
/// names but the map lacks.
pub fn rebuild(map: &ConfigMap) -> Result<ConfigGroup, ElementKey> {
    rebuild_group(map, &ElementKey::root())
}

fn rebuild_group(map: &ConfigMap, key: &ElementKey) -> Result<ConfigGroup, ElementKey> {
    let Some(Element::Group(stored)) = map.get(key) else {
        return Err(key.clone());
    };
    let mut group = ConfigGroup {
        version: stored.version,
        mod_policy: stored.mod_policy.clone(),
        ..ConfigGroup::default()
    };
    for name in stored.values.keys() {
        let child = key.child(Kind::Value, name);
        match map.get(&child) {
            Some(Element::Value(v)) => {
                group.values.insert(name.clone(), v.clone());
            }
            _ => return Err(child),
        }
    }
    for name in stored.policies.keys() {
        let child = key.child(Kind::Policy, name);
        match map.get(&child) {
            Some(Element::Policy(p)) => {
                group.policies.insert(name.clone(), p.clone());
            }
            _ => return Err(child),
        }
    }
    for name in stored.groups.keys() {
        let child = key.child(Kind::Group, name);
        group
            .groups
            .insert(name.clone(), rebuild_group(map, &child)?);
    }
    Ok(group)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fabric::channelconfig::genesis::GenesisProfile;

    #[test]
    fn flatten_then_rebuild_gives_the_same_tree() {
        let config = GenesisProfile::embedded("c", vec!["a:1".into()]).config();
        let root = config.channel_group.expect("root");
        let map = flatten(&root);
        assert!(map.contains_key(&ElementKey {
            kind: Kind::Value,
            path: vec!["Channel".into(), "Orderer".into(), "BatchSize".into()],
        }));
        assert_eq!(rebuild(&map).expect("rebuild"), root);
    }

    #[test]
    fn values_resolve_against_their_group_and_print_readably() {
        let key = ElementKey::root()
            .child(Kind::Group, "Orderer")
            .child(Kind::Value, "BatchSize");
        assert_eq!(key.parent_path(), ["Channel", "Orderer"]);
        assert_eq!(key.to_string(), "value /Channel/Orderer/BatchSize");
        assert_eq!(ElementKey::root().parent_path(), ["Channel"]);
    }
}
