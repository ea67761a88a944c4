//! Fabric's signature policy language: `OR('Org1MSP.member', AND('A.admin',
//! 'B.peer'))`, `OutOf(2, 'A.member', 'B.member', 'C.member')`, parsed into a
//! `SignaturePolicyEnvelope` over MSP role principals.

use prost::Message;

use crate::fabric::protos::common::{
    msp_principal::Classification, msp_role::MspRoleType, signature_policy, MspPrincipal, MspRole,
    SignaturePolicy, SignaturePolicyEnvelope,
};

#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
#[error("invalid signature policy {policy:?}: {reason}")]
pub struct PolicyDslError {
    pub policy: String,
    pub reason: String,
}

/// Parses a policy expression.
pub fn parse(policy: &str) -> Result<SignaturePolicyEnvelope, PolicyDslError> {
    let fail = |reason: String| PolicyDslError {
        policy: policy.to_string(),
        reason,
    };
    let mut parser = Parser {
        text: policy.as_bytes(),
        at: 0,
        identities: Vec::new(),
    };
    let rule = parser.expression().map_err(fail)?;
    parser.skip_spaces();
    if parser.at != parser.text.len() {
        return Err(fail(format!("unexpected text at position {}", parser.at)));
    }
    Ok(SignaturePolicyEnvelope {
        version: 0,
        rule: Some(rule),
        identities: parser.identities,
    })
}

struct Parser<'a> {
    text: &'a [u8],
    at: usize,
    identities: Vec<MspPrincipal>,
}

impl Parser<'_> {
    fn skip_spaces(&mut self) {
        while self.text.get(self.at).is_some_and(u8::is_ascii_whitespace) {
            self.at += 1;
        }
    }

    fn peek(&mut self) -> Option<u8> {
        self.skip_spaces();
        self.text.get(self.at).copied()
    }

    fn expect(&mut self, byte: u8) -> Result<(), String> {
        match self.peek() {
            Some(b) if b == byte => {
                self.at += 1;
                Ok(())
            }
            Some(b) => Err(format!(
                "expected '{}' at position {}, found '{}'",
                byte as char, self.at, b as char
            )),
            None => Err(format!("expected '{}' at the end", byte as char)),
        }
    }

    fn word(&mut self) -> String {
        self.skip_spaces();
        let start = self.at;
        while self
            .text
            .get(self.at)
            .is_some_and(|b| b.is_ascii_alphanumeric())
        {
            self.at += 1;
        }
        String::from_utf8_lossy(&self.text[start..self.at]).into_owned()
    }

    fn expression(&mut self) -> Result<SignaturePolicy, String> {
        match self.peek() {
            Some(b'\'') | Some(b'"') => self.principal(),
            Some(_) => {
                let operator = self.word();
                self.expect(b'(')?;
                let n = if operator.eq_ignore_ascii_case("outof") {
                    let count = self.word();
                    self.expect(b',')?;
                    Some(
                        count
                            .parse::<i32>()
                            .map_err(|_| format!("OutOf needs a count, got {count:?}"))?,
                    )
                } else {
                    None
                };
                let mut rules = vec![self.expression()?];
                while self.peek() == Some(b',') {
                    self.at += 1;
                    rules.push(self.expression()?);
                }
                self.expect(b')')?;
                let n = match (operator.to_ascii_uppercase().as_str(), n) {
                    ("AND", _) => rules.len() as i32,
                    ("OR", _) => 1,
                    ("OUTOF", Some(n)) if n >= 0 && (n as usize) <= rules.len() => n,
                    ("OUTOF", Some(n)) => {
                        return Err(format!("OutOf({n}, ...) over {} rules", rules.len()))
                    }
                    (other, _) => return Err(format!("unknown operator {other:?}")),
                };
                Ok(SignaturePolicy {
                    r#type: Some(signature_policy::Type::NOutOf(signature_policy::NOutOf {
                        n,
                        rules,
                    })),
                })
            }
            None => Err("expression expected".into()),
        }
    }

    /// `'MSPID.role'`: a signature by a member of that role.
    fn principal(&mut self) -> Result<SignaturePolicy, String> {
        let quote = self.peek().unwrap_or(b'\'');
        self.at += 1;
        let start = self.at;
        while self.text.get(self.at).is_some_and(|&b| b != quote) {
            self.at += 1;
        }
        if self.at >= self.text.len() {
            return Err("unterminated principal".into());
        }
        let principal = String::from_utf8_lossy(&self.text[start..self.at]).into_owned();
        self.at += 1;
        let (msp, role) = principal
            .rsplit_once('.')
            .ok_or_else(|| format!("principal {principal:?} is not MSPID.role"))?;
        let role = match role {
            "member" => MspRoleType::Member,
            "admin" => MspRoleType::Admin,
            "client" => MspRoleType::Client,
            "peer" => MspRoleType::Peer,
            "orderer" => MspRoleType::Orderer,
            other => return Err(format!("unknown role {other:?} in {principal:?}")),
        };
        if msp.is_empty() {
            return Err(format!("principal {principal:?} has no MSP ID"));
        }
        let identity = MspPrincipal {
            principal_classification: Classification::Role as i32,
            principal: MspRole {
                msp_identifier: msp.to_string(),
                role: role as i32,
            }
            .encode_to_vec()
            .into(),
        };
        let index = match self.identities.iter().position(|i| *i == identity) {
            Some(i) => i,
            None => {
                self.identities.push(identity);
                self.identities.len() - 1
            }
        };
        Ok(SignaturePolicy {
            r#type: Some(signature_policy::Type::SignedBy(index as i32)),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n_out_of(policy: &SignaturePolicy) -> (i32, usize) {
        match &policy.r#type {
            Some(signature_policy::Type::NOutOf(n)) => (n.n, n.rules.len()),
            other => panic!("not NOutOf: {other:?}"),
        }
    }

    #[test]
    fn or_of_one_member() {
        let envelope = parse("OR('OrdererMSP.member')").expect("valid");
        let rule = envelope.rule.expect("rule");
        assert_eq!(n_out_of(&rule), (1, 1));
        assert_eq!(envelope.identities.len(), 1);
        let role = MspRole::decode(envelope.identities[0].principal.clone()).expect("role");
        assert_eq!(role.msp_identifier, "OrdererMSP");
        assert_eq!(role.role, MspRoleType::Member as i32);
    }

    #[test]
    fn nested_and_out_of_with_shared_identities() {
        let envelope =
            parse("OutOf(2, 'A.member', AND(\"B.admin\", 'C.peer'), 'A.member')").expect("valid");
        assert_eq!(n_out_of(envelope.rule.as_ref().expect("rule")), (2, 3));
        // 'A.member' appears twice but is one identity.
        assert_eq!(envelope.identities.len(), 3);
    }

    #[test]
    fn bad_expressions_say_why() {
        for (text, why) in [
            ("OR('A.member'", "expected ')'"),
            ("XOR('A.member')", "unknown operator"),
            ("OR('A.boss')", "unknown role"),
            ("OR('Amember')", "is not MSPID.role"),
            ("OutOf(3, 'A.member')", "OutOf(3"),
            ("OR('A.member') trailing", "unexpected text"),
        ] {
            let err = parse(text).expect_err(text);
            assert!(err.to_string().contains(why), "{text}: {err}");
        }
    }
}
