//! What to do with what is found: the user's choices and the resource limits.

use std::time::Duration;

/// What happens to remote content (images, stylesheets, fonts, media) that is not a
/// known or suspected tracker. Trackers are always stripped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RemoteContent {
    /// Keep content images and other remote content; remove only trackers.
    #[default]
    Keep,
    /// Remove every remote fetch: the mail opens without any network request.
    Strip,
    /// Rewrite remote content to the image proxy (`Policy::proxy`): fetched when the mail
    /// is opened, by the proxy, never by the reader's client. Without a proxy
    /// configuration this strips.
    Proxy,
    /// Like `Proxy`, and the frontend fetches every proxied URL into the proxy's cache at
    /// delivery (what Apple's Mail Privacy Protection does).
    Prefetch,
}

impl Policy {
    /// What is done with signed content under this policy (see [`Policy::signed`]).
    pub fn signed_content(&self) -> SignedContent {
        self.signed.unwrap_or(match self.remote_content {
            RemoteContent::Keep => SignedContent::Keep,
            _ => SignedContent::Clean,
        })
    }
}

impl RemoteContent {
    /// Whether remote content goes through the proxy.
    pub fn proxies(self) -> bool {
        matches!(self, RemoteContent::Proxy | RemoteContent::Prefetch)
    }
}

impl std::str::FromStr for RemoteContent {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "keep" => Ok(RemoteContent::Keep),
            "strip" => Ok(RemoteContent::Strip),
            "proxy" => Ok(RemoteContent::Proxy),
            "prefetch" => Ok(RemoteContent::Prefetch),
            other => Err(format!(
                "unknown remote-content policy {other:?} (keep|strip|proxy|prefetch)"
            )),
        }
    }
}

/// What happens to signed content (multipart/signed, S/MIME signed-data): cleaning it
/// changes the bytes the signature covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignedContent {
    /// Leave signed content byte for byte: the signature stays valid, and whatever the
    /// signed part fetches, it fetches.
    Keep,
    /// Clean signed content like any other, and attach the original signed entity, byte
    /// for byte, as a non-rendered attachment (`application/octet-stream`), so that the
    /// signature can still be checked. Signed content that needs no change stays as it
    /// came; opaque S/MIME (`application/pkcs7-mime`, which mailveil does not unpack) is
    /// replaced by a short note and the attachment.
    Clean,
}

impl std::str::FromStr for SignedContent {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "keep" => Ok(SignedContent::Keep),
            "clean" => Ok(SignedContent::Clean),
            other => Err(format!("unknown signed policy {other:?} (keep|clean)")),
        }
    }
}

/// What happens when a mail cannot be cleaned (parse failure, limit, internal error).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OnError {
    /// Deliver it so that nothing is lost and nothing fetches: the original, byte for
    /// byte, as a non-rendered attachment (`application/octet-stream`) of a short note,
    /// with `X-Mailveil: v=...; error=...` on top. A mail over `max_message_bytes` is not
    /// read at all and is delivered the same way, `error=too-large`.
    #[default]
    PassUnchanged,
    /// Ask the sender to retry later (frontends answer 4xx / exit 75).
    Tempfail,
}

/// Bounds on the work done for one message (docs/architecture.md, invariant 8).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Larger messages are not read: the original goes on as an attachment of a note,
    /// `error=too-large` (see `TooLarge` for frontends that stream it).
    pub max_message_bytes: usize,
    /// Decoded HTML parts larger than this are neutralised instead of rewritten.
    pub max_part_bytes: usize,
    /// Deeper MIME nesting (multipart and message/rfc822) is an error (the mail is
    /// delivered as an attachment, see `OnError`).
    pub max_depth: usize,
    /// More parts than this is an error.
    pub max_parts: usize,
    /// Memory lol_html may use for one part (buffers of a single tag, a style block).
    pub html_memory_bytes: usize,
    /// Wall-clock budget for cleaning one message.
    pub max_time: Duration,
    /// At most this many findings are listed in the report (all are still acted on).
    pub max_findings: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_message_bytes: 128 << 20,
            max_part_bytes: 32 << 20,
            max_depth: 64,
            max_parts: 5000,
            html_memory_bytes: 16 << 20,
            max_time: Duration::from_secs(10),
            max_findings: 2000,
        }
    }
}

/// The policy applied to one message.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Policy {
    /// Remote content that is not a tracker.
    pub remote_content: RemoteContent,
    /// Remove `Disposition-Notification-To` / `Return-Receipt-To` read-receipt requests
    /// (they are always reported).
    pub strip_read_receipts: bool,
    /// What to do with a mail that cannot be cleaned.
    pub on_error: OnError,
    /// Links: unwrap redirects, remove identifying parameters.
    pub links: crate::links::LinkPolicy,
    /// Resource bounds.
    pub limits: Limits,
    /// The image proxy and link shield, for `RemoteContent::Proxy` / `Prefetch`.
    pub proxy: Option<crate::proxy_url::ProxyConfig>,
    /// Signed content: `None` cleans it under every remote-content policy but `Keep`
    /// (strip, proxy and prefetch promise that the reader's client fetches nothing),
    /// and keeps it byte for byte under `Keep`.
    pub signed: Option<SignedContent>,
    /// Put a short note of what was removed at the top of cleaned HTML parts (off by
    /// default; a part that already has one gets no second).
    pub banner: bool,
}
