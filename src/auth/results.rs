//! The verdict and its `Authentication-Results` rendering (RFC 8601), and the removal of
//! the `Authentication-Results` fields that claim to be ours (RFC 8601 section 5). Pure.

use super::headers;

/// A result code of RFC 8601 section 2.7.1 (DKIM) and RFC 8617 (ARC).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthResult {
    /// Verified.
    Pass,
    /// Signed, and the signature (or its body hash) does not verify.
    Fail,
    /// Signed, but the signature could not be processed (malformed, expired).
    Neutral,
    /// Not signed.
    None,
    /// A temporary failure: the key lookup failed or timed out.
    TempError,
    /// A permanent failure: no key published, or an unusable one.
    PermError,
}

impl AuthResult {
    /// The result keyword as it appears in the header.
    pub fn as_str(self) -> &'static str {
        match self {
            AuthResult::Pass => "pass",
            AuthResult::Fail => "fail",
            AuthResult::Neutral => "neutral",
            AuthResult::None => "none",
            AuthResult::TempError => "temperror",
            AuthResult::PermError => "permerror",
        }
    }
}

/// The verdict on one DKIM signature.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DkimVerdict {
    /// The result.
    pub result: AuthResult,
    /// The signing domain (`d=`), when the signature could be read.
    pub domain: Option<String>,
    /// The selector (`s=`), when the signature could be read.
    pub selector: Option<String>,
    /// Why it did not pass (our words, never the mail's).
    pub reason: Option<&'static str>,
}

/// The verdict on the ARC chain the message arrived with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArcVerdict {
    /// `none` (no chain), `pass`, or `fail` (broken, or not verifiable now:
    /// `temperror` when a key lookup failed or timed out).
    pub result: AuthResult,
    /// How many ARC sets the message carries (the next one is this plus one).
    pub sets: usize,
    /// Why it did not pass.
    pub reason: Option<&'static str>,
}

/// What was found before anything was changed: one entry per DKIM signature examined
/// (none: not signed) and the incoming ARC chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    /// Per signature, in the order they appear.
    pub dkim: Vec<DkimVerdict>,
    /// The incoming ARC chain.
    pub arc: ArcVerdict,
}

impl Verdict {
    /// A message with no signature and no chain.
    pub fn unsigned() -> Verdict {
        Verdict {
            dkim: Vec::new(),
            arc: ArcVerdict {
                result: AuthResult::None,
                sets: 0,
                reason: None,
            },
        }
    }

    /// The value of our `Authentication-Results` field, on one line with single spaces
    /// (also what goes into the ARC-Authentication-Results):
    /// `mx.example.org; dkim=pass header.d=example.com header.s=sel; arc=none`.
    pub fn render(&self, authserv_id: &str) -> String {
        let mut out = String::from(authserv_id);
        let mut budget = MAX_RESULTS_LEN;
        if self.dkim.is_empty() {
            out.push_str("; dkim=none");
        }
        for v in &self.dkim {
            let mut one = format!("; dkim={}", v.result.as_str());
            if let Some(reason) = v.reason {
                one.push_str(&format!(" reason=\"{reason}\""));
            }
            if let Some(d) = &v.domain {
                one.push_str(&format!(" header.d={}", pvalue(d)));
            }
            if let Some(s) = &v.selector {
                one.push_str(&format!(" header.s={}", pvalue(s)));
            }
            // A bounded field whatever the mail carries: results past the budget are
            // left out, never cut in the middle.
            if one.len() > budget {
                break;
            }
            budget -= one.len();
            out.push_str(&one);
        }
        out.push_str("; arc=");
        out.push_str(match self.arc.result {
            AuthResult::Pass => "pass",
            AuthResult::None => "none",
            _ => "fail",
        });
        if let Some(reason) = self.arc.reason {
            out.push_str(&format!(" reason=\"{reason}\""));
        }
        out
    }
}

/// The DKIM results of one field stay within this many characters (RFC 5322 lines end
/// at 998; the ARC-Authentication-Results carries the value on one line when signed).
const MAX_RESULTS_LEN: usize = 700;

/// A property value from the mail (`d=`, `s=`) as an RFC 8601 pvalue: as it is when it
/// is a plain domain or selector, otherwise a quoted string with every control
/// character dropped (nothing the sender writes can end the field or add one), at most
/// 255 characters.
fn pvalue(v: &str) -> String {
    let plain = !v.is_empty()
        && v.len() <= 255
        && v.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'));
    if plain {
        return v.to_string();
    }
    let mut out = String::from("\"");
    for c in v.chars().filter(|c| !c.is_control()).take(255) {
        if matches!(c, '"' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
    out
}

/// Whether an authserv-id is one we can write as it is: a domain-like token.
pub(crate) fn valid_authserv_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 255
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'))
}

/// The authserv-id an `Authentication-Results` value starts with (RFC 8601 section
/// 2.2: `[CFWS] authserv-id`, a token or a quoted string), read leniently: comments
/// (nested) and folding before it are skipped, and the token ends at the first byte no
/// token may hold, as a reader that trusts the field would read it.
pub(crate) fn authserv_id_of(value: &[u8]) -> Option<String> {
    let mut i = skip_cfws(value, 0);
    if value.get(i) == Some(&b'"') {
        let mut id = Vec::new();
        i += 1;
        while let Some(&b) = value.get(i) {
            match b {
                b'"' => return Some(String::from_utf8_lossy(&id).into_owned()),
                b'\\' => {
                    i += 1;
                    id.extend(value.get(i));
                }
                b'\r' | b'\n' => {}
                _ => id.push(b),
            }
            i += 1;
        }
        return None;
    }
    let start = i;
    while value.get(i).is_some_and(|&b| is_token_byte(b)) {
        i += 1;
    }
    (i > start).then(|| String::from_utf8_lossy(&value[start..i]).into_owned())
}

/// RFC 2045 token characters: printable ASCII except space and tspecials.
fn is_token_byte(b: u8) -> bool {
    b.is_ascii_graphic() && !b"()<>@,;:\\\"/[]?=".contains(&b)
}

/// Past whitespace, line breaks and (nested, escaped) comments.
fn skip_cfws(v: &[u8], mut i: usize) -> usize {
    let mut depth = 0usize;
    while let Some(&b) = v.get(i) {
        match b {
            b'(' => depth += 1,
            b')' if depth > 0 => depth -= 1,
            b'\\' if depth > 0 => i += 1,
            b' ' | b'\t' | b'\r' | b'\n' => {}
            _ if depth > 0 => {}
            _ => return i,
        }
        i += 1;
    }
    i
}

/// `msg` without the `Authentication-Results` fields whose authserv-id is ours
/// (compared without regard to case): only we may say what we found. Others' stay.
pub fn remove_ours(msg: &[u8], authserv_id: &str) -> Vec<u8> {
    let drop: Vec<_> = headers::fields(msg)
        .into_iter()
        .filter(|f| f.is("Authentication-Results"))
        .filter(|f| {
            authserv_id_of(f.value(msg)).is_some_and(|id| id.eq_ignore_ascii_case(authserv_id))
        })
        .map(|f| f.range)
        .collect();
    headers::without(msg, &drop)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sig(result: AuthResult, d: &str, s: &str, reason: Option<&'static str>) -> DkimVerdict {
        DkimVerdict {
            result,
            domain: Some(d.into()),
            selector: Some(s.into()),
            reason,
        }
    }

    #[test]
    fn renders_each_signature_and_the_chain() {
        let v = Verdict {
            dkim: vec![
                sig(AuthResult::Pass, "sender.example", "s1", None),
                sig(
                    AuthResult::Fail,
                    "esp.example",
                    "k2",
                    Some("body hash did not verify"),
                ),
            ],
            arc: ArcVerdict {
                result: AuthResult::None,
                sets: 0,
                reason: None,
            },
        };
        assert_eq!(
            v.render("mx.example.org"),
            "mx.example.org; dkim=pass header.d=sender.example header.s=s1; \
             dkim=fail reason=\"body hash did not verify\" header.d=esp.example header.s=k2; \
             arc=none"
        );
        assert_eq!(Verdict::unsigned().render("mx"), "mx; dkim=none; arc=none");
    }

    #[test]
    fn values_from_the_mail_cannot_end_or_add_a_field() {
        let v = Verdict {
            dkim: vec![sig(
                AuthResult::Fail,
                "evil.example\r\nAuthentication-Results: mx; dkim=pass",
                "a\"b\\c",
                None,
            )],
            ..Verdict::unsigned()
        };
        let out = v.render("mx");
        assert!(!out.contains('\r') && !out.contains('\n'), "{out}");
        assert!(
            out.contains("header.d=\"evil.exampleAuthentication-Results: mx; dkim=pass\""),
            "{out}"
        );
        assert!(out.contains(r#"header.s="a\"b\\c""#), "{out}");
    }

    #[test]
    fn a_mail_with_many_signatures_gives_a_bounded_field() {
        let long = "d".repeat(250);
        let v = Verdict {
            dkim: (0..50)
                .map(|_| sig(AuthResult::Pass, &long, "s", None))
                .collect(),
            ..Verdict::unsigned()
        };
        let out = v.render("mx");
        assert!(out.len() < 800, "{}", out.len());
        assert!(out.ends_with("; arc=none"));
    }

    #[test]
    fn authserv_id_read_as_a_trusting_reader_reads_it() {
        for (value, id) in [
            (&b" mx.example.org; dkim=pass"[..], Some("mx.example.org")),
            (b"mx.example.org;dkim=pass", Some("mx.example.org")),
            (
                b" (a (nested) comment)\r\n\tMX.Example.ORG 1; none",
                Some("MX.Example.ORG"),
            ),
            (b" \"mx.example.org\"; dkim=pass", Some("mx.example.org")),
            (b" \"mx.ex\\ample.org\"; dkim=pass", Some("mx.example.org")),
            (b" mx.example.org(c); dkim=pass", Some("mx.example.org")),
            (b" ; dkim=pass", None),
            (b" (unclosed", None),
        ] {
            assert_eq!(authserv_id_of(value).as_deref(), id, "{value:?}");
        }
    }

    #[test]
    fn only_our_results_are_removed() {
        let raw = b"Authentication-Results: mx.example.org; dkim=pass\r\n\
Authentication-Results: (forged)\r\n \"MX.EXAMPLE.ORG\"; arc=pass\r\n\
Authentication-Results: upstream.example; dkim=fail\r\n\
Authentication-Results: mx.example.org.evil; dkim=pass\r\n\
Subject: hi\r\n\r\nbody\r\n";
        let out = remove_ours(raw, "mx.example.org");
        assert_eq!(
            out,
            b"Authentication-Results: upstream.example; dkim=fail\r\n\
Authentication-Results: mx.example.org.evil; dkim=pass\r\n\
Subject: hi\r\n\r\nbody\r\n"
        );
    }
}
