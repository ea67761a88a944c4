//! Certification chains, built the way Go's `x509.Certificate.Verify` builds
//! them for Fabric: from a certificate up through intermediates to a root,
//! every link's signature verified, every certificate valid at one instant,
//! intermediates marked as CAs, path lengths respected, and extended key
//! usages compatible with server authentication (Go's default when none is
//! asked for, which Fabric's MSP never changes).

use super::cert::Cert;

/// The certificates a chain may be built from.
pub struct Pool<'a> {
    pub roots: &'a [Cert],
    pub intermediates: &'a [Cert],
}

/// Every chain from `leaf` to a root, as of `at` (Unix seconds).
pub fn chains<'a>(leaf: &'a Cert, pool: &Pool<'a>, at: i64) -> Result<Vec<Vec<&'a Cert>>, String> {
    if !leaf.valid_at(at) {
        return Err(expired(leaf, at));
    }
    let mut found = Vec::new();
    let mut hint = None;
    if pool.roots.iter().any(|root| root.der == leaf.der) {
        found.push(vec![leaf]);
    } else {
        build(vec![leaf], pool, at, &mut found, &mut hint, &mut 0);
    }
    if found.is_empty() {
        return Err(match hint {
            Some(hint) => format!(
                "x509: certificate signed by unknown authority (possibly because of \"{hint}\" while trying to verify candidate authority certificate)"
            ),
            None => "x509: certificate signed by unknown authority".into(),
        });
    }
    found.retain(|chain| usable_for_server_auth(chain));
    if found.is_empty() {
        return Err("x509: certificate specifies an incompatible key usage".into());
    }
    Ok(found)
}

/// The only chain of `leaf`; Fabric refuses certificates with several.
pub fn unique_chain<'a>(leaf: &'a Cert, pool: &Pool<'a>, at: i64) -> Result<Vec<&'a Cert>, String> {
    let mut all =
        chains(leaf, pool, at).map_err(|e| format!("the supplied identity is not valid: {e}"))?;
    if all.len() != 1 {
        return Err(format!(
            "this MSP only supports a single validation chain, got {}",
            all.len()
        ));
    }
    Ok(all.remove(0))
}

/// Bounds the work an adversarial pool can cause, as Go does.
const MAX_SIGNATURE_CHECKS: usize = 100;

fn build<'a>(
    chain: Vec<&'a Cert>,
    pool: &Pool<'a>,
    at: i64,
    found: &mut Vec<Vec<&'a Cert>>,
    hint: &mut Option<String>,
    checks: &mut usize,
) {
    let Some(current) = chain.last().copied() else {
        return;
    };
    let candidates = pool
        .roots
        .iter()
        .map(|c| (c, true))
        .chain(pool.intermediates.iter().map(|c| (c, false)));
    for (candidate, is_root) in candidates {
        if candidate.subject != current.issuer || chain.iter().any(|c| c.der == candidate.der) {
            continue;
        }
        *checks += 1;
        if *checks > MAX_SIGNATURE_CHECKS {
            *hint = Some("too many signature checks".into());
            return;
        }
        if let Err(e) = current.check_signature_from(candidate) {
            *hint = Some(e);
            continue;
        }
        if let Err(e) = valid_as_issuer(candidate, is_root, &chain, at) {
            *hint = Some(e);
            continue;
        }
        let mut longer = chain.clone();
        longer.push(candidate);
        if is_root {
            found.push(longer);
        } else {
            build(longer, pool, at, found, hint, checks);
        }
    }
}

fn valid_as_issuer(cert: &Cert, is_root: bool, below: &[&Cert], at: i64) -> Result<(), String> {
    if !cert.valid_at(at) {
        return Err(expired(cert, at));
    }
    if !is_root && !cert.is_ca() {
        return Err("x509: certificate is not authorized to sign other certificates".into());
    }
    if let Some((_, Some(max_path_len))) = cert.basic_constraints {
        let intermediates = below.len().saturating_sub(1);
        if intermediates > max_path_len as usize {
            return Err("x509: too many intermediates for path length constraint".into());
        }
    }
    Ok(())
}

/// Walking down from the root, each certificate that restricts its extended
/// key usages must allow server authentication (or any usage).
fn usable_for_server_auth(chain: &[&Cert]) -> bool {
    chain.iter().all(|cert| match cert.extended_key_usage {
        None => true,
        Some((any, server_auth)) => any || server_auth,
    })
}

fn expired(cert: &Cert, at: i64) -> String {
    let when = if at < cert.not_before {
        "is before the certificate's NotBefore"
    } else {
        "is after the certificate's NotAfter"
    };
    format!("x509: certificate has expired or is not yet valid: the validation time {when}")
}
