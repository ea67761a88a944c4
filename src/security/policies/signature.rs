//! Signature policies (Fabric's `cauthdsl`): an n-out-of tree over `SignedBy`
//! rules, each naming one principal of the envelope.
//!
//! Evaluation is greedy and in order, as Fabric's: each `SignedBy` takes the
//! first unused identity that satisfies its principal; an n-out-of tries its
//! rules one after the other on a copy of the used marks and keeps the marks
//! of each rule that was satisfied. So a signer counts once.

use prost::Message;

use super::PolicyError;
use crate::fabric::protos::common::{signature_policy, SignaturePolicy, SignaturePolicyEnvelope};
use crate::security::msp::{Identity, Principal};

#[derive(Debug)]
enum Rule {
    SignedBy(usize),
    NOutOf { n: i32, rules: Vec<Rule> },
}

/// A compiled `SignaturePolicyEnvelope`.
#[derive(Debug)]
pub struct SignaturePolicyRule {
    rule: Rule,
    /// Principals that cannot be decoded are never satisfied (as in Fabric,
    /// where they fail at evaluation, not when the config is read).
    principals: Vec<Result<Principal, String>>,
}

impl SignaturePolicyRule {
    pub fn from_bytes(value: &[u8]) -> Result<SignaturePolicyRule, String> {
        let envelope = SignaturePolicyEnvelope::decode(value)
            .map_err(|e| format!("error unmarshalling to SignaturePolicy: {e}"))?;
        SignaturePolicyRule::new(&envelope)
    }

    pub fn new(envelope: &SignaturePolicyEnvelope) -> Result<SignaturePolicyRule, String> {
        if envelope.version != 0 {
            return Err(format!(
                "This evaluator only understands messages of version 0, but version was {}",
                envelope.version
            ));
        }
        let rule = compile(envelope.rule.as_ref(), envelope.identities.len())?;
        let principals = envelope
            .identities
            .iter()
            .map(|p| Principal::from_proto(p).map_err(|e| e.to_string()))
            .collect();
        Ok(SignaturePolicyRule { rule, principals })
    }

    /// Whether `identities` (valid, distinct, their signatures verified)
    /// satisfy the policy.
    pub fn evaluate(&self, identities: &[&Identity]) -> Result<(), PolicyError> {
        let mut used = vec![false; identities.len()];
        if self.satisfied(&self.rule, identities, &mut used) {
            Ok(())
        } else {
            Err(PolicyError::SignatureSetNotSatisfied)
        }
    }

    fn satisfied(&self, rule: &Rule, identities: &[&Identity], used: &mut [bool]) -> bool {
        match rule {
            Rule::SignedBy(index) => {
                let Some(Ok(principal)) = self.principals.get(*index) else {
                    return false;
                };
                for (i, identity) in identities.iter().enumerate() {
                    if used[i] {
                        continue;
                    }
                    if identity.satisfies(principal).is_ok() {
                        used[i] = true;
                        return true;
                    }
                }
                false
            }
            Rule::NOutOf { n, rules } => {
                let mut verified = 0i32;
                let mut trial = used.to_vec();
                for rule in rules {
                    trial.copy_from_slice(used);
                    if self.satisfied(rule, identities, &mut trial) {
                        verified += 1;
                        used.copy_from_slice(&trial);
                    }
                }
                verified >= *n
            }
        }
    }
}

fn compile(policy: Option<&SignaturePolicy>, identities: usize) -> Result<Rule, String> {
    let policy = policy.ok_or("Empty policy element")?;
    match &policy.r#type {
        Some(signature_policy::Type::SignedBy(index)) => {
            if *index < 0 || *index as usize >= identities {
                return Err(format!(
                    "identity index out of range, requested {index}, but identities length is {identities}"
                ));
            }
            Ok(Rule::SignedBy(*index as usize))
        }
        Some(signature_policy::Type::NOutOf(n_out_of)) => Ok(Rule::NOutOf {
            n: n_out_of.n,
            rules: n_out_of
                .rules
                .iter()
                .map(|rule| compile(Some(rule), identities))
                .collect::<Result<_, _>>()?,
        }),
        None => Err("Empty policy element".into()),
    }
}
