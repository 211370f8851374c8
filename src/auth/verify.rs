//! DKIM signatures and the ARC chain of a message as it arrived, with mail-auth; the
//! library's results turned into our verdict.

use super::dns::Resolver;
use super::headers;
use super::results::{ArcVerdict, AuthResult, DkimVerdict, Verdict};
use mail_auth::common::crypto::CryptoError;
use mail_auth::dkim::DkimError;
use mail_auth::{AuthenticatedMessage, DkimOutput, DkimResult, DnsError, Error};

/// Signatures verified per mail at most (RFC 6376 section 6.1 lets a verifier limit
/// them): each costs a key lookup, and the sender chooses how many there are.
pub const MAX_SIGNATURES: usize = 8;

/// The DKIM and ARC verdict on `raw` as it is, before anything changes it. Every key
/// lookup of the mail together takes at most the resolver's timeout; past it the
/// signatures not yet verified are `temperror`. Never fails: a message whose header
/// cannot be read carries no signature we could check (`dkim=none`).
pub async fn verify(raw: &[u8], resolver: &Resolver) -> Verdict {
    let msg = &raw[headers::header_start(raw)..];
    let Some(mut parsed) = AuthenticatedMessage::parse(msg) else {
        return Verdict::unsigned();
    };
    parsed.dkim_headers.truncate(MAX_SIGNATURES);
    let parsed = parsed;
    let work = async {
        tokio::join!(
            resolver.inner.verify_dkim(&parsed),
            resolver.inner.verify_arc(&parsed)
        )
    };
    match tokio::time::timeout(resolver.timeout, work).await {
        Ok((dkim, arc)) => Verdict {
            dkim: dkim.iter().map(dkim_verdict).collect(),
            arc: arc_verdict(arc.result(), parsed.ams_headers.len()),
        },
        Err(_) => timed_out(&parsed),
    }
}

/// Every signature `temperror`: the lookups did not finish in time.
fn timed_out(parsed: &AuthenticatedMessage<'_>) -> Verdict {
    const WHY: Option<&str> = Some("DNS timed out");
    let sets = parsed.ams_headers.len();
    Verdict {
        dkim: parsed
            .dkim_headers
            .iter()
            .map(|h| DkimVerdict {
                result: AuthResult::TempError,
                domain: Some(h.header.d.clone()),
                selector: Some(h.header.s.clone()),
                reason: WHY,
            })
            .collect(),
        arc: ArcVerdict {
            result: if sets == 0 {
                AuthResult::None
            } else {
                AuthResult::TempError
            },
            sets,
            reason: if sets == 0 { None } else { WHY },
        },
    }
}

fn dkim_verdict(out: &DkimOutput<'_>) -> DkimVerdict {
    let (result, reason) = match out.result() {
        DkimResult::Pass => (AuthResult::Pass, None),
        DkimResult::None => (AuthResult::None, None),
        // The library says neutral for a body hash that does not match; RFC 6376
        // section 6.1.3 says PERMFAIL ("body hash did not verify"), which is RFC 8601's
        // `fail`: the body is not what was signed.
        DkimResult::Neutral(e @ Error::Dkim(DkimError::FailedBodyHashMatch)) => {
            (AuthResult::Fail, Some(reason(e)))
        }
        DkimResult::Neutral(e) => (AuthResult::Neutral, Some(reason(e))),
        DkimResult::Fail(e) => (AuthResult::Fail, Some(reason(e))),
        DkimResult::PermError(e) => (AuthResult::PermError, Some(reason(e))),
        DkimResult::TempError(e) => (AuthResult::TempError, Some(reason(e))),
    };
    let sig = out.signature();
    DkimVerdict {
        result,
        domain: sig.map(|s| s.d.clone()),
        selector: sig.map(|s| s.s.clone()),
        reason,
    }
}

fn arc_verdict(result: &DkimResult, sets: usize) -> ArcVerdict {
    let (result, reason) = match result {
        DkimResult::None => (AuthResult::None, None),
        DkimResult::Pass => (AuthResult::Pass, None),
        DkimResult::TempError(e) => (AuthResult::TempError, Some(reason(e))),
        DkimResult::Fail(e) | DkimResult::Neutral(e) | DkimResult::PermError(e) => {
            (AuthResult::Fail, Some(reason(e)))
        }
    };
    ArcVerdict {
        result,
        sets,
        reason,
    }
}

/// Our words for why a signature did not pass: fixed text, nothing from the mail.
fn reason(e: &Error) -> &'static str {
    match e {
        Error::Crypto(CryptoError::FailedVerification) => "signature did not verify",
        Error::Crypto(CryptoError::IncompatibleAlgorithms) => "key does not fit the signature",
        Error::Crypto(CryptoError::Library(_)) => "unusable key",
        Error::Dkim(DkimError::FailedBodyHashMatch) => "body hash did not verify",
        Error::Dkim(DkimError::FailedAuidMatch) => "identity does not match the key",
        Error::Dkim(DkimError::RevokedPublicKey) => "key revoked",
        Error::Dkim(DkimError::SignatureExpired) => "signature expired",
        Error::Dkim(DkimError::SignatureLength) => "partial body signature",
        Error::Dkim(_) => "unsupported signature",
        Error::Dns(DnsError::RecordNotFound(_)) => "no key published",
        Error::Dns(DnsError::InvalidRecordType) => "no usable key record",
        Error::Dns(DnsError::Resolver(_)) => "key lookup failed",
        Error::Arc(_) => "broken chain",
        Error::ParseError | Error::MissingParameters | Error::Base64 => "malformed signature",
        _ => "not verifiable",
    }
}
