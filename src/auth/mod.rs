//! Authentication that survives the rewrite (issue 19): the DKIM signatures and ARC
//! chain of a mail are verified before cleaning changes anything, the verdict is
//! recorded in `Authentication-Results` (RFC 8601), and a mail cleaning changed is
//! sealed with the next ARC set (RFC 8617) so the next hop can trust both the verdict
//! and the change.
//!
//! It lives around the core, never in it: [`clean`](crate::clean) stays pure, and with
//! authentication off (the default) nothing here runs and nothing is looked up. The
//! pipeline calls it for every frontend that takes mail in (`filter`, `serve` for each
//! copy, the milter): [`Authenticator::verify`] before the core, [`Authenticator::finish`]
//! after.
//!
//! ```text
//! raw --verify (DNS)--> Verdict
//! raw --clean--> cleaned --finish(Verdict)--> [ARC set] Authentication-Results cleaned
//! ```

mod dns;
mod headers;
pub(crate) mod keys;
mod results;
mod seal;
mod verify;

pub use dns::Resolver;
use dns::parse_server;
use results::remove_ours;
pub use results::{ArcVerdict, AuthResult, DkimVerdict, Verdict};
use seal::{ArcKey, seal};
pub use verify::verify;

use mailveil_core::HEADER_NAME;
use serde::Deserialize;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::PathBuf;
use std::time::Duration;

/// The authentication settings, the same for every frontend: flags on the command line
/// (`--authenticate`, `--dns-resolver`...), keys of the same names in a configuration
/// file.
#[derive(Debug, Clone, Default, PartialEq, Eq, clap::Args, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Settings {
    /// Verify DKIM signatures and the ARC chain before cleaning, and record the verdict
    /// in Authentication-Results (off by default: then no DNS lookup is ever made).
    #[arg(long)]
    pub authenticate: bool,
    /// The DNS server for key lookups, IP:PORT (default: those of /etc/resolv.conf).
    #[arg(long, value_name = "IP:PORT")]
    pub dns_resolver: Option<String>,
    /// Seconds all key lookups of one mail may take together; past them the
    /// signatures not yet verified are temperror and the mail goes on (default 5).
    #[arg(long, value_name = "SECS", value_parser = clap::value_parser!(u64).range(1..=60))]
    pub dns_timeout: Option<u64>,
    /// The name in our Authentication-Results (default: this host's name).
    #[arg(long, value_name = "NAME")]
    pub auth_serv_id: Option<String>,
    /// Seal mail that cleaning changed with this ARC key (PEM; `mailveil arc-key
    /// generate`). Needs --arc-selector and --arc-domain.
    #[arg(long, value_name = "FILE")]
    pub arc_key: Option<PathBuf>,
    /// The selector the ARC key is published under (SELECTOR._domainkey.DOMAIN).
    #[arg(long, value_name = "SELECTOR")]
    pub arc_selector: Option<String>,
    /// The domain the ARC key is published under (the seal's d=).
    #[arg(long, value_name = "DOMAIN")]
    pub arc_domain: Option<String>,
}

/// Default of `dns_timeout`.
pub const DEFAULT_DNS_TIMEOUT: Duration = Duration::from_secs(5);

impl Settings {
    /// The lookup budget of one mail.
    pub fn dns_timeout(&self) -> Duration {
        self.dns_timeout
            .map_or(DEFAULT_DNS_TIMEOUT, |s| Duration::from_secs(s.clamp(1, 60)))
    }
}

/// What authentication needs for every mail: the resolver, our authserv-id, the ARC
/// key. Built once per process (a daemon shares its resolver cache across mails).
pub struct Authenticator {
    /// The resolver for key lookups.
    pub resolver: Resolver,
    /// Our authserv-id.
    pub authserv_id: String,
    /// The ARC key, when sealing is configured.
    pub arc_key: Option<ArcKey>,
}

impl Authenticator {
    /// `None` when authentication is off; an error names the setting that is wrong.
    pub fn from_settings(s: &Settings) -> Result<Option<Authenticator>, String> {
        let sealing = s.arc_key.is_some() || s.arc_selector.is_some() || s.arc_domain.is_some();
        if !s.authenticate {
            if sealing {
                return Err("--arc-key needs --authenticate (the seal carries the verdict)".into());
            }
            return Ok(None);
        }
        let server = s.dns_resolver.as_deref().map(parse_server).transpose()?;
        let resolver = Resolver::new(server, s.dns_timeout())?;
        let authserv_id = match &s.auth_serv_id {
            Some(id) => id.clone(),
            None => host_name()?,
        };
        if !results::valid_authserv_id(&authserv_id) {
            return Err(format!(
                "auth-serv-id {authserv_id:?}: letters, digits, '.', '-' and '_' only"
            ));
        }
        let arc_key = if sealing {
            let (Some(path), Some(selector), Some(domain)) =
                (&s.arc_key, &s.arc_selector, &s.arc_domain)
            else {
                return Err("--arc-key, --arc-selector and --arc-domain go together".into());
            };
            for (what, v) in [("arc-selector", selector), ("arc-domain", domain)] {
                if !dns_name(v) {
                    return Err(format!("{what} {v:?}: not a DNS name"));
                }
            }
            Some(ArcKey::load(path, selector, domain)?)
        } else {
            None
        };
        Ok(Some(Authenticator {
            resolver,
            authserv_id,
            arc_key,
        }))
    }

    /// The verdict on the mail as it arrived: [`verify`], with a panic in the library
    /// caught (the verdict is then `temperror` for the mail, which goes on).
    pub async fn verify(&self, raw: &[u8]) -> Verdict {
        use futures_util::FutureExt;
        AssertUnwindSafe(verify(raw, &self.resolver))
            .catch_unwind()
            .await
            .unwrap_or_else(|_| internal_error())
    }

    /// The mail as it leaves: `cleaned` without the Authentication-Results that claim
    /// to be ours, with ours on top (the verdict on `original`), and with the next ARC
    /// set above it when a key is configured and cleaning changed the mail. A mail
    /// cleaning left as it was is not sealed (its own signatures still hold). Never
    /// fails: a seal that cannot be made is left out and said in the returned note.
    pub fn finish(
        &self,
        original: &[u8],
        verdict: &Verdict,
        cleaned: &[u8],
    ) -> (Vec<u8>, Option<String>) {
        let eol = headers::eol(cleaned);
        let value = verdict.render(&self.authserv_id);
        let ar = headers::folded("Authentication-Results", &value);
        let out = headers::prepend(
            &remove_ours(cleaned, &self.authserv_id),
            &headers::with_eol(&ar, eol),
        );
        let Some(key) = &self.arc_key else {
            return (out, None);
        };
        if !changed(original, cleaned) {
            return (out, None);
        }
        let sealed = catch_unwind(AssertUnwindSafe(|| {
            seal(verdict, &self.authserv_id, &out, key)
        }))
        .unwrap_or_else(|_| Err("ARC seal: internal error".into()));
        match sealed {
            Ok(set) => (headers::prepend(&out, &headers::with_eol(&set, eol)), None),
            Err(why) => (out, Some(why)),
        }
    }
}

/// Whether cleaning changed what a signature could cover: anything but our own report
/// header and Authentication-Results (which no one signs: each hop writes its own).
fn changed(original: &[u8], cleaned: &[u8]) -> bool {
    let strip = |m: &[u8]| {
        let m = headers::without_named(m, HEADER_NAME);
        headers::without_named(&m, "Authentication-Results")
    };
    strip(original) != strip(cleaned)
}

/// The verdict when the verifier itself failed: nothing could be checked.
fn internal_error() -> Verdict {
    Verdict {
        dkim: vec![DkimVerdict {
            result: AuthResult::TempError,
            domain: None,
            selector: None,
            reason: Some("internal error"),
        }],
        arc: ArcVerdict {
            result: AuthResult::TempError,
            sets: 0,
            reason: Some("internal error"),
        },
    }
}

/// A DNS name of letters, digits, '-' and '_' labels.
fn dns_name(v: &str) -> bool {
    let v = v.strip_suffix('.').unwrap_or(v);
    !v.is_empty()
        && v.len() <= 253
        && v.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && l.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_'))
        })
}

/// This host's name, the default authserv-id.
fn host_name() -> Result<String, String> {
    let uts = rustix::system::uname();
    let name = uts.nodename().to_string_lossy().into_owned();
    if name.is_empty() {
        return Err("this host has no name: set --auth-serv-id".into());
    }
    Ok(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn off_by_default_and_sealing_needs_it_on() {
        assert!(
            Authenticator::from_settings(&Settings::default())
                .unwrap()
                .is_none()
        );
        let s = Settings {
            arc_key: Some("/nonexistent".into()),
            ..Settings::default()
        };
        assert!(Authenticator::from_settings(&s).is_err());
    }

    #[test]
    fn settings_read_from_a_configuration_file() {
        let s: Settings = toml::from_str(
            "authenticate = true\ndns_resolver = \"127.0.0.1:5353\"\ndns_timeout = 2\n\
             auth_serv_id = \"mx.example.org\"\n",
        )
        .unwrap();
        assert!(s.authenticate);
        assert_eq!(s.dns_timeout(), Duration::from_secs(2));
        assert!(toml::from_str::<Settings>("dns_resolvr = \"x\"").is_err());
    }

    #[test]
    fn bad_names_are_configuration_errors() {
        let base = Settings {
            authenticate: true,
            dns_resolver: Some("127.0.0.1:9".into()),
            ..Settings::default()
        };
        let bad_id = Settings {
            auth_serv_id: Some("mx;dkim=pass".into()),
            ..base.clone()
        };
        assert!(Authenticator::from_settings(&bad_id).is_err());
        let half_arc = Settings {
            auth_serv_id: Some("mx".into()),
            arc_selector: Some("s".into()),
            ..base.clone()
        };
        assert!(Authenticator::from_settings(&half_arc).is_err());
        assert!(dns_name("arc-2026._x.example.org."));
        assert!(!dns_name("a b.example"));
        assert!(!dns_name("a..b"));
    }

    #[test]
    fn only_a_real_change_counts() {
        let raw = b"From: a@b\r\nSubject: s\r\n\r\nbody\r\n";
        let ours = b"X-Mailveil: v=0.1.0\r\nFrom: a@b\r\nSubject: s\r\n\r\nbody\r\n";
        assert!(!changed(raw, ours));
        let body = b"X-Mailveil: v=0.1.0\r\nFrom: a@b\r\nSubject: s\r\n\r\nBODY\r\n";
        assert!(changed(raw, body));
        let header = b"X-Mailveil: v=0.1.0\r\nFrom: a@b\r\n\r\nbody\r\n";
        assert!(changed(raw, header));
    }
}
