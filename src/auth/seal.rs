//! The ARC set (RFC 8617) added to a message this hop changed: the verdict on the
//! message as it arrived (ARC-Authentication-Results), a signature over the message as
//! it leaves (ARC-Message-Signature) and the seal over the chain (ARC-Seal). Pure: the
//! chain's status comes from the verdict, so sealing looks nothing up.

use super::headers;
use super::keys;
use super::results::{AuthResult, Verdict};
use mail_auth::arc::{ArcSealer, Set};
use mail_auth::common::crypto::{RsaKey, Sha256};
use mail_auth::common::headers::{Header, HeaderWriter};
use mail_auth::dkim::Done;
use mail_auth::{ArcOutput, AuthenticatedMessage, AuthenticationResults, DkimResult};
use std::path::Path;

/// RFC 8617 section 4.2.1: instances run from 1 to 50.
const MAX_INSTANCE: usize = 50;

/// The header fields the ARC-Message-Signature covers: those a reader sees and those
/// that say what the content is. Absent ones are signed as absent (none may be added
/// later). Not `Authentication-Results` (each hop writes its own), not `X-Mailveil`.
const SIGNED_HEADERS: &[&str] = &[
    "From",
    "Sender",
    "Reply-To",
    "To",
    "Cc",
    "Subject",
    "Date",
    "Message-ID",
    "In-Reply-To",
    "References",
    "MIME-Version",
    "Content-Type",
    "Content-Transfer-Encoding",
    "List-Id",
    "List-Unsubscribe",
    "List-Unsubscribe-Post",
    "DKIM-Signature",
];

/// An ARC signing key (RSA-SHA256) with its selector and domain.
pub struct ArcKey {
    sealer: ArcSealer<RsaKey<Sha256>, Done>,
    /// The selector (`s=`).
    pub selector: String,
    /// The signing domain (`d=`).
    pub domain: String,
}

impl ArcKey {
    /// Reads the key file (see [`keys::read_private_key`] for the permission rule).
    pub fn load(path: &Path, selector: &str, domain: &str) -> Result<ArcKey, String> {
        let key = keys::read_private_key(path)?;
        let signing = RsaKey::<Sha256>::from_key_der(key.der)
            .map_err(|e| format!("ARC key {}: {e}", path.display()))?;
        let sealer = ArcSealer::from_key(signing)
            .domain(domain)
            .selector(selector)
            .headers(SIGNED_HEADERS.iter().copied());
        Ok(ArcKey {
            sealer,
            selector: selector.to_string(),
            domain: domain.to_string(),
        })
    }
}

/// The next ARC set for `msg` (the message as it leaves, header block on top), as
/// header text with CRLF line ends, to go on top of it. `verdict` is the one on the
/// message as it arrived: its ARC result gives `cv=` (`none` for the first set, `pass`
/// after a chain that verified). An error says why there is no set: the chain failed or
/// could not be checked now (a seal with `cv=fail` ends a chain and helps no one), it is
/// at its 50 sets, its sets are no longer those that were verified, or signing failed.
pub fn seal(
    verdict: &Verdict,
    authserv_id: &str,
    msg: &[u8],
    key: &ArcKey,
) -> Result<String, String> {
    if !matches!(verdict.arc.result, AuthResult::None | AuthResult::Pass) {
        return Err(format!(
            "not sealed: the incoming ARC chain is {}",
            verdict.arc.result.as_str()
        ));
    }
    if verdict.arc.sets >= MAX_INSTANCE {
        return Err(format!("not sealed: the ARC chain has {MAX_INSTANCE} sets"));
    }
    let body = &msg[headers::header_start(msg)..];
    let parsed = AuthenticatedMessage::parse(body)
        .ok_or_else(|| "the message to seal has no header block".to_string())?;
    let sets = parsed.ams_headers.len();
    if sets != verdict.arc.sets
        || parsed.as_headers.len() != sets
        || parsed.aar_headers.len() != sets
        || parsed.has_arc_errors
    {
        return Err("not sealed: the ARC sets are not those verified on arrival".into());
    }
    // The chain as verified on arrival, now read from the message to seal: the seal
    // signs these very header fields.
    let mut chain = ArcOutput::default();
    for ((seal, sig), aar) in parsed
        .as_headers
        .iter()
        .zip(&parsed.ams_headers)
        .zip(&parsed.aar_headers)
    {
        chain = chain.with_set(Set {
            signature: Header::new(sig.name, sig.value, &sig.header),
            seal: Header::new(seal.name, seal.value, &seal.header),
            results: Header::new(aar.name, aar.value, &aar.header),
        });
    }
    if sets > 0 {
        chain = chain.with_result(DkimResult::Pass);
    }
    // The library writes its "hostname" verbatim after `i=N; ` in the
    // ARC-Authentication-Results it signs and emits, and it has no way to take results
    // of our own: our whole value (one line, single spaces) goes there.
    let value = verdict.render(authserv_id);
    let results = AuthenticationResults::new(&value);
    let set = key
        .sealer
        .seal(&parsed, &results, &chain)
        .map_err(|e| format!("ARC seal: {e}"))?;
    let text = set.to_header();
    let aar_at = text
        .find("ARC-Authentication-Results:")
        .ok_or_else(|| "ARC seal: no ARC-Authentication-Results made".to_string())?;
    // The same field folded: relaxed canonicalisation (all ARC signatures use it) reads
    // a folded space as the space that was signed.
    let aar = headers::folded(
        "ARC-Authentication-Results",
        &format!("i={}; {value}", set.seal.i),
    );
    Ok(format!("{}{aar}", &text[..aar_at]))
}
