//! Every policy of a channel config, by absolute path, compiled once; and
//! their evaluation over a set of signed data.
//!
//! Within one evaluation each signature is verified at most once, however
//! many sub-policies look at it (an ImplicitMeta over several organizations
//! reads the same signers for each), and nothing is deserialized or verified
//! when the policy needs no signer at all (ImplicitMeta over no child group).

use std::cell::OnceCell;
use std::collections::HashMap;
use std::sync::Arc;

use prost::Message;

use super::signature::SignaturePolicyRule;
use super::{PolicyError, SignedData};
use crate::fabric::protos::common::{
    implicit_meta_policy::Rule as MetaRule, policy::PolicyType, ConfigGroup, ImplicitMetaPolicy,
};
use crate::security::msp::{Identity, MspManager};

#[derive(Debug)]
enum Policy {
    Signature(SignaturePolicyRule),
    ImplicitMeta {
        sub_policy: String,
        threshold: usize,
        /// The sub-policy of each child group (None: the child has none,
        /// which is never satisfied).
        children: Vec<Option<usize>>,
    },
}

/// The compiled policies of one channel config.
#[derive(Debug)]
pub struct PolicyManager {
    policies: Vec<Policy>,
    by_path: HashMap<String, usize>,
    msps: Arc<MspManager>,
}

impl PolicyManager {
    /// Compiles every policy of the tree under `root` (the `/Channel` group).
    /// A policy that does not compile makes the config invalid, as in Fabric.
    pub fn new(root: &ConfigGroup, msps: Arc<MspManager>) -> Result<PolicyManager, PolicyError> {
        let mut by_path = HashMap::new();
        index_paths(root, "/Channel", &mut by_path);
        let mut slots: Vec<Option<Policy>> = (0..by_path.len()).map(|_| None).collect();
        compile_group(root, "/Channel", &by_path, &mut slots)?;
        let policies = slots
            .into_iter()
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| PolicyError::Invalid {
                path: "/Channel".into(),
                reason: "a policy was not compiled".into(),
            })?;
        Ok(PolicyManager {
            policies,
            by_path,
            msps,
        })
    }

    /// A manager with no policy (every path is missing).
    pub fn empty(msps: Arc<MspManager>) -> PolicyManager {
        PolicyManager {
            policies: Vec::new(),
            by_path: HashMap::new(),
            msps,
        }
    }

    pub fn exists(&self, path: &str) -> bool {
        self.by_path.contains_key(path)
    }

    /// Every policy path, sorted.
    pub fn paths(&self) -> Vec<String> {
        let mut paths: Vec<String> = self.by_path.keys().cloned().collect();
        paths.sort();
        paths
    }

    pub fn msp_manager(&self) -> &Arc<MspManager> {
        &self.msps
    }

    /// Evaluates the policy at `path` (absolute: `/Channel/Writers`) over
    /// `signed`. A signature that does not verify, an identity that does not
    /// deserialize or validate, and a repeated identity count for nothing.
    pub fn evaluate_signed_data(
        &self,
        path: &str,
        signed: &[SignedData],
    ) -> Result<(), PolicyError> {
        let index = *self
            .by_path
            .get(path)
            .ok_or_else(|| PolicyError::NoSuchPolicy(path.to_string()))?;
        let evaluation = Evaluation {
            signed,
            msps: &self.msps,
            identities: OnceCell::new(),
        };
        self.evaluate(index, &evaluation)
    }

    fn evaluate(&self, index: usize, evaluation: &Evaluation<'_>) -> Result<(), PolicyError> {
        match &self.policies[index] {
            Policy::Signature(rule) => {
                let identities: Vec<&Identity> =
                    evaluation.identities().iter().map(Arc::as_ref).collect();
                rule.evaluate(&identities)
            }
            Policy::ImplicitMeta {
                sub_policy,
                threshold,
                children,
            } => {
                let mut satisfied = 0;
                if satisfied >= *threshold {
                    return Ok(());
                }
                for child in children.iter().flatten() {
                    if self.evaluate(*child, evaluation).is_ok() {
                        satisfied += 1;
                        if satisfied >= *threshold {
                            return Ok(());
                        }
                    }
                }
                Err(PolicyError::ImplicitMetaNotSatisfied {
                    satisfied,
                    required: *threshold,
                    sub_policy: sub_policy.clone(),
                })
            }
        }
    }
}

/// One evaluation's signers, read when a signature policy first needs them.
struct Evaluation<'a> {
    signed: &'a [SignedData],
    msps: &'a MspManager,
    identities: OnceCell<Vec<Arc<Identity>>>,
}

impl Evaluation<'_> {
    /// Fabric's `SignatureSetToValidIdentities`: each signer deserialized and
    /// validated, repeats skipped before their signature is checked, and
    /// only those whose signature verifies kept.
    fn identities(&self) -> &[Arc<Identity>] {
        self.identities.get_or_init(|| {
            let mut valid: Vec<Arc<Identity>> = Vec::with_capacity(self.signed.len());
            for (i, data) in self.signed.iter().enumerate() {
                let identity = match self.msps.deserialize_identity(&data.identity) {
                    Ok(identity) => identity,
                    Err(e) => {
                        tracing::debug!(signature = i, error = %e, "signer is not a valid identity of the channel; ignored");
                        continue;
                    }
                };
                if valid.iter().any(|seen| seen.same_as(&identity)) {
                    tracing::debug!(signature = i, msp = identity.msp_id(), "signer appears more than once; counted once");
                    continue;
                }
                #[cfg(test)]
                super::tests::VERIFICATIONS.with(|n| n.set(n.get() + 1));
                if let Err(e) = identity.verify(&data.data, &data.signature) {
                    tracing::debug!(signature = i, msp = identity.msp_id(), error = %e, "signature does not verify; ignored");
                    continue;
                }
                valid.push(identity);
            }
            valid
        })
    }
}

fn index_paths(group: &ConfigGroup, path: &str, by_path: &mut HashMap<String, usize>) {
    let mut names: Vec<&String> = group.policies.keys().collect();
    names.sort();
    for name in names {
        let next = by_path.len();
        by_path.insert(format!("{path}/{name}"), next);
    }
    let mut children: Vec<&String> = group.groups.keys().collect();
    children.sort();
    for child in children {
        index_paths(&group.groups[child], &format!("{path}/{child}"), by_path);
    }
}

fn compile_group(
    group: &ConfigGroup,
    path: &str,
    by_path: &HashMap<String, usize>,
    slots: &mut [Option<Policy>],
) -> Result<(), PolicyError> {
    for (name, config_policy) in &group.policies {
        let full = format!("{path}/{name}");
        let invalid = |reason: String| PolicyError::Invalid {
            path: full.clone(),
            reason,
        };
        let policy = config_policy
            .policy
            .as_ref()
            .ok_or_else(|| invalid("policy was nil".into()))?;
        let compiled = match PolicyType::try_from(policy.r#type) {
            Ok(PolicyType::Signature) => Policy::Signature(
                SignaturePolicyRule::from_bytes(&policy.value)
                    .map_err(|e| invalid(format!("failed unmarshal: {e}")))?,
            ),
            Ok(PolicyType::ImplicitMeta) => {
                let meta = ImplicitMetaPolicy::decode(policy.value.clone()).map_err(|e| {
                    invalid(format!(
                        "implicit policy did not compile: error unmarshalling to ImplicitMetaPolicy: {e}"
                    ))
                })?;
                let mut child_names: Vec<&String> = group.groups.keys().collect();
                child_names.sort();
                let children: Vec<Option<usize>> = child_names
                    .iter()
                    .map(|child| {
                        by_path
                            .get(&format!("{path}/{child}/{}", meta.sub_policy))
                            .copied()
                    })
                    .collect();
                let count = children.len();
                let threshold = match MetaRule::try_from(meta.rule) {
                    _ if count == 0 => 0,
                    Ok(MetaRule::Any) => 1,
                    Ok(MetaRule::All) => count,
                    Ok(MetaRule::Majority) => count / 2 + 1,
                    Err(_) => {
                        return Err(invalid(format!(
                            "implicit policy did not compile: unknown rule {}",
                            meta.rule
                        )))
                    }
                };
                Policy::ImplicitMeta {
                    sub_policy: meta.sub_policy,
                    threshold,
                    children,
                }
            }
            _ => return Err(invalid(format!("unknown policy type: {}", policy.r#type))),
        };
        let index = by_path
            .get(&full)
            .copied()
            .ok_or_else(|| invalid("not indexed".into()))?;
        slots[index] = Some(compiled);
    }
    for (name, child) in &group.groups {
        compile_group(child, &format!("{path}/{name}"), by_path, slots)?;
    }
    Ok(())
}
