//! The envelope of MAIL FROM / RCPT TO: RFC 5321 paths and ESMTP parameters, read from
//! the client's command and written again for the downstream.
//!
//! Written by hand because no parser at hand keeps what a path means: smtp-proto reads
//! a path into one unquoted string (`<"a b"@x>` and `<a b@x>` alike, `<postmaster>` as
//! `<>`), which cannot be written back unambiguously, and the RFC 5322 address parsers
//! read header syntax (comments, display names, obsolete forms), not RFC 5321 paths.
//! The grammar is small (RFC 5321 4.1.2, RFC 6531 3.3 for UTF-8).
//!
//! A [`Mailbox`] keeps the local part as its value (quotes and quoted-pairs removed) and
//! is written back in the one canonical form: a Dot-string when the value is one, a
//! Quoted-string otherwise. Parameters are only the ones this server announces, each
//! checked against its own syntax, so nothing the client wrote can turn into a second
//! recipient or a parameter on the way downstream.

use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr};

/// The longest path accepted, between the angle brackets (RFC 5321 4.5.3.1.3).
const MAX_PATH: usize = 256;
/// The longest domain (RFC 5321 4.5.3.1.2) and label (RFC 1035).
const MAX_DOMAIN: usize = 255;
const MAX_LABEL: usize = 63;

/// Why a MAIL or RCPT command was not accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EnvelopeError {
    /// Not `MAIL FROM:<path>` / `RCPT TO:<path>` (brackets missing, junk after the path).
    Syntax,
    /// The path is not an RFC 5321 path (or too long).
    BadAddress,
    /// A parameter that breaks its syntax (keyword=value, or the value of a known one).
    BadParam,
    /// A parameter this server does not announce for this command (upper case).
    UnknownParam(String),
    /// The same parameter twice.
    DuplicateParam(String),
}

/// An RFC 5321 mailbox: a local part and a domain (none only for `<postmaster>`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Mailbox {
    local: String,
    domain: Option<String>,
}

impl Mailbox {
    /// A mailbox from its parts: the local part's value (unquoted) and the domain (a
    /// name, or an address literal with its brackets). `None` when the parts do not form
    /// a mailbox that can be written (a control character, a bad domain).
    pub fn new(local: &str, domain: Option<&str>) -> Option<Mailbox> {
        let local_ok = !local.is_empty()
            && local
                .chars()
                .all(|c| (' '..='~').contains(&c) || !c.is_ascii());
        let domain_ok = match domain {
            Some(d) => valid_domain(d),
            None => local.eq_ignore_ascii_case("postmaster"),
        };
        (local_ok && domain_ok).then(|| Mailbox {
            local: local.to_string(),
            domain: domain.map(str::to_string),
        })
    }

    /// The local part's value, quotes and quoted-pairs removed.
    pub fn local_part(&self) -> &str {
        &self.local
    }

    /// The domain, or `None` for `<postmaster>`.
    pub fn domain(&self) -> Option<&str> {
        self.domain.as_deref()
    }

    /// `local@domain` with the local part unquoted: what our own records match against
    /// (recipient tokens, policies). Not for the wire; use the `Display` form there.
    pub fn address(&self) -> String {
        match &self.domain {
            Some(d) => format!("{}@{d}", self.local),
            None => self.local.clone(),
        }
    }

    /// Whether the mailbox is all ASCII (otherwise it needs SMTPUTF8).
    pub fn is_ascii(&self) -> bool {
        self.local.is_ascii() && self.domain.as_deref().is_none_or(str::is_ascii)
    }

    /// Reads a path as a milter or a log gives it: `<mailbox>`, or the bare mailbox.
    /// `Ok(None)` is the null path `<>`.
    pub fn parse_path(text: &str) -> Result<Option<Mailbox>, EnvelopeError> {
        let text = text.trim();
        let bracketed = text.starts_with('<');
        let inner = if bracketed {
            text.strip_prefix('<')
                .and_then(|t| t.strip_suffix('>'))
                .ok_or(EnvelopeError::BadAddress)?
        } else {
            text
        };
        let mut cur = Cursor::new(inner);
        let path = cur.path_body(true)?;
        if !cur.done() {
            return Err(EnvelopeError::BadAddress);
        }
        Ok(path)
    }
}

/// The RFC 5321 form: `local@domain`, the local part as a Dot-string when it is one and
/// as a Quoted-string otherwise (only `"` and `\` escaped).
impl fmt::Display for Mailbox {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if is_dot_string(&self.local) {
            f.write_str(&self.local)?;
        } else {
            f.write_str("\"")?;
            for c in self.local.chars() {
                if c == '"' || c == '\\' {
                    f.write_str("\\")?;
                }
                write!(f, "{c}")?;
            }
            f.write_str("\"")?;
        }
        match &self.domain {
            Some(d) => write!(f, "@{d}"),
            None => Ok(()),
        }
    }
}

/// One ESMTP parameter (`KEYWORD` or `KEYWORD=value`), checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Param {
    keyword: String,
    value: Option<String>,
}

impl Param {
    /// The keyword, upper case.
    pub fn keyword(&self) -> &str {
        &self.keyword
    }

    /// The value as the client wrote it.
    pub fn value(&self) -> Option<&str> {
        self.value.as_deref()
    }
}

impl fmt::Display for Param {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.value {
            Some(v) => write!(f, "{}={v}", self.keyword),
            None => f.write_str(&self.keyword),
        }
    }
}

/// `MAIL FROM:<path> [params]`: the sender (`None` for `<>`) and the parameters.
pub fn parse_mail(line: &[u8]) -> Result<(Option<Mailbox>, Vec<Param>), EnvelopeError> {
    let (path, params) = parse_command(line, "MAIL", "FROM:", false)?;
    Ok((path, check_params(&params, MAIL_PARAMS)?))
}

/// `RCPT TO:<path> [params]`: the recipient (`<postmaster>` allowed, `<>` not) and the
/// parameters.
pub fn parse_rcpt(line: &[u8]) -> Result<(Mailbox, Vec<Param>), EnvelopeError> {
    let (path, params) = parse_command(line, "RCPT", "TO:", true)?;
    let rcpt = path.ok_or(EnvelopeError::BadAddress)?;
    Ok((rcpt, check_params(&params, RCPT_PARAMS)?))
}

/// Whether the line is a MAIL or RCPT command (`verb` is `MAIL` or `RCPT`), so that it
/// goes to [`parse_mail`] / [`parse_rcpt`] and nowhere else.
pub fn is_verb(line: &[u8], verb: &str) -> bool {
    let line = line.trim_ascii_start();
    line.get(..verb.len())
        .is_some_and(|v| v.eq_ignore_ascii_case(verb.as_bytes()))
        && line
            .get(verb.len())
            .is_none_or(|b| matches!(b, b' ' | b'\t' | b'\r' | b'\n'))
}

/// The MAIL FROM command for the downstream, CRLF included.
pub fn mail_command<'a>(
    sender: Option<&Mailbox>,
    params: impl IntoIterator<Item = &'a Param>,
) -> String {
    let mut line = match sender {
        Some(m) => format!("MAIL FROM:<{m}>"),
        None => "MAIL FROM:<>".to_string(),
    };
    push_params(&mut line, params);
    line
}

/// The RCPT TO command for the downstream, CRLF included.
pub fn rcpt_command<'a>(rcpt: &Mailbox, params: impl IntoIterator<Item = &'a Param>) -> String {
    let mut line = format!("RCPT TO:<{rcpt}>");
    push_params(&mut line, params);
    line
}

fn push_params<'a>(line: &mut String, params: impl IntoIterator<Item = &'a Param>) {
    for p in params {
        line.push(' ');
        line.push_str(&p.to_string());
    }
    line.push_str("\r\n");
}

/// Splits `VERB KEY:<path> params` into the path and the raw parameter words.
fn parse_command<'a>(
    line: &'a [u8],
    verb: &str,
    key: &str,
    rcpt: bool,
) -> Result<(Option<Mailbox>, Vec<&'a str>), EnvelopeError> {
    let line = line
        .strip_suffix(b"\r\n")
        .or_else(|| line.strip_suffix(b"\n"))
        .unwrap_or(line);
    let text = std::str::from_utf8(line).map_err(|_| EnvelopeError::BadAddress)?;
    let text = text.trim_start_matches([' ', '\t']);
    let rest = strip_prefix_ci(text, verb).ok_or(EnvelopeError::Syntax)?;
    // One or more blanks after the verb, none before the colon, any after it (`MAIL
    // FROM: <a@b>` is common and Postfix takes it).
    if !rest.starts_with([' ', '\t']) {
        return Err(EnvelopeError::Syntax);
    }
    let rest = rest.trim_start_matches([' ', '\t']);
    let rest = strip_prefix_ci(rest, key).ok_or(EnvelopeError::Syntax)?;
    let rest = rest.trim_start_matches(' ');
    let mut cur = Cursor::new(rest.strip_prefix('<').ok_or(EnvelopeError::Syntax)?);
    let path = cur.path_body(rcpt)?;
    let rest = cur
        .rest()
        .strip_prefix('>')
        .ok_or(EnvelopeError::BadAddress)?;
    if rcpt && path.is_none() {
        return Err(EnvelopeError::BadAddress);
    }
    if !rest.is_empty() && !rest.starts_with(' ') {
        return Err(EnvelopeError::Syntax);
    }
    Ok((path, rest.split(' ').filter(|w| !w.is_empty()).collect()))
}

fn strip_prefix_ci<'a>(text: &'a str, prefix: &str) -> Option<&'a str> {
    let head = text.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix)
        .then(|| &text[prefix.len()..])
}

/// Reading position inside a path.
struct Cursor<'a> {
    text: &'a str,
    at: usize,
}

impl<'a> Cursor<'a> {
    fn new(text: &'a str) -> Self {
        Cursor { text, at: 0 }
    }
    fn rest(&self) -> &'a str {
        &self.text[self.at..]
    }
    fn done(&self) -> bool {
        self.at == self.text.len()
    }
    fn peek(&self) -> Option<char> {
        self.rest().chars().next()
    }
    fn bump(&mut self) -> Option<char> {
        let c = self.peek()?;
        self.at += c.len_utf8();
        Some(c)
    }
    fn eat(&mut self, c: char) -> bool {
        if self.peek() == Some(c) {
            self.at += c.len_utf8();
            true
        } else {
            false
        }
    }

    /// What is between `<` and `>`: empty (the null path), or `[A-d-l ":"] Mailbox`;
    /// stops before the `>` or the end. `postmaster` alone only where `postmaster`.
    fn path_body(&mut self, postmaster: bool) -> Result<Option<Mailbox>, EnvelopeError> {
        let start = self.at;
        if self.peek() == Some('>') || self.done() {
            return Ok(None);
        }
        if self.peek() == Some('@') {
            // A source route: accepted and ignored (RFC 5321 4.1.1.3, C).
            loop {
                if !self.eat('@') {
                    return Err(EnvelopeError::BadAddress);
                }
                self.domain()?;
                if self.eat(':') {
                    break;
                }
                if !self.eat(',') {
                    return Err(EnvelopeError::BadAddress);
                }
            }
        }
        let local = self.local_part()?;
        let domain = if self.eat('@') {
            Some(self.domain()?)
        } else if postmaster && local.eq_ignore_ascii_case("postmaster") && !local.quoted {
            None
        } else {
            return Err(EnvelopeError::BadAddress);
        };
        if self.at - start > MAX_PATH {
            return Err(EnvelopeError::BadAddress);
        }
        Mailbox::new(&local.value, domain.as_deref())
            .map(Some)
            .ok_or(EnvelopeError::BadAddress)
    }

    /// `Dot-string / Quoted-string`, its value.
    fn local_part(&mut self) -> Result<Local, EnvelopeError> {
        let mut value = String::new();
        if self.eat('"') {
            loop {
                match self.bump().ok_or(EnvelopeError::BadAddress)? {
                    '"' => break,
                    '\\' => match self.bump() {
                        Some(c) if (' '..='~').contains(&c) => value.push(c),
                        _ => return Err(EnvelopeError::BadAddress),
                    },
                    c if is_qtext(c) => value.push(c),
                    _ => return Err(EnvelopeError::BadAddress),
                }
            }
            if value.is_empty() {
                // `""@x`: legal, but no mailbox anyone has; not readable alike everywhere.
                return Err(EnvelopeError::BadAddress);
            }
            return Ok(Local {
                value,
                quoted: true,
            });
        }
        while let Some(c) = self.peek() {
            if is_atext(c) || c == '.' {
                value.push(c);
                self.at += c.len_utf8();
            } else {
                break;
            }
        }
        if !is_dot_string(&value) {
            return Err(EnvelopeError::BadAddress);
        }
        Ok(Local {
            value,
            quoted: false,
        })
    }

    /// `Domain / address-literal`, as written.
    fn domain(&mut self) -> Result<String, EnvelopeError> {
        let start = self.at;
        if self.eat('[') {
            while let Some(c) = self.bump() {
                if c == ']' {
                    let d = &self.text[start..self.at];
                    return if valid_domain(d) {
                        Ok(d.to_string())
                    } else {
                        Err(EnvelopeError::BadAddress)
                    };
                }
            }
            return Err(EnvelopeError::BadAddress);
        }
        while let Some(c) = self.peek() {
            if c.is_ascii_alphanumeric() || c == '-' || c == '.' || !c.is_ascii() {
                self.at += c.len_utf8();
            } else {
                break;
            }
        }
        let d = &self.text[start..self.at];
        if valid_domain(d) {
            Ok(d.to_string())
        } else {
            Err(EnvelopeError::BadAddress)
        }
    }
}

struct Local {
    value: String,
    quoted: bool,
}

impl Local {
    fn eq_ignore_ascii_case(&self, other: &str) -> bool {
        self.value.eq_ignore_ascii_case(other)
    }
}

/// RFC 5322 atext, plus UTF-8 (RFC 6531).
fn is_atext(c: char) -> bool {
    c.is_ascii_alphanumeric() || "!#$%&'*+-/=?^_`{|}~".contains(c) || !c.is_ascii()
}

/// RFC 5321 qtextSMTP: printable ASCII but `"` and `\`, space included, plus UTF-8.
fn is_qtext(c: char) -> bool {
    ((' '..='~').contains(&c) && c != '"' && c != '\\') || !c.is_ascii()
}

/// `Atom *("." Atom)`.
fn is_dot_string(s: &str) -> bool {
    !s.is_empty()
        && s.split('.')
            .all(|atom| !atom.is_empty() && atom.chars().all(is_atext))
}

/// `sub-domain *("." sub-domain)` (U-labels allowed), or an IPv4 / IPv6 address
/// literal in brackets. General address literals (`[tag:...]`) are not taken.
fn valid_domain(d: &str) -> bool {
    if let Some(lit) = d.strip_prefix('[').and_then(|d| d.strip_suffix(']')) {
        if let Some(v6) = strip_prefix_ci(lit, "IPv6:") {
            return v6.parse::<Ipv6Addr>().is_ok();
        }
        return lit.parse::<Ipv4Addr>().is_ok();
    }
    d.len() <= MAX_DOMAIN
        && d.split('.').all(|label| {
            let edge =
                |c: Option<char>| c.is_some_and(|c| c.is_ascii_alphanumeric() || !c.is_ascii());
            label.len() <= MAX_LABEL
                && edge(label.chars().next())
                && edge(label.chars().last())
                && label
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || !c.is_ascii())
        })
}

/// A parameter keyword and the check of its value (`None`: no `=value`).
type KnownParam = (&'static str, fn(Option<&str>) -> bool);

/// The parameters announced for MAIL: SIZE, 8BITMIME (BODY), SMTPUTF8, DSN (RET, ENVID).
const MAIL_PARAMS: &[KnownParam] = &[
    ("SIZE", |v| {
        v.is_some_and(|v| (1..=20).contains(&v.len()) && v.bytes().all(|b| b.is_ascii_digit()))
    }),
    ("BODY", |v| {
        v.is_some_and(|v| v.eq_ignore_ascii_case("7BIT") || v.eq_ignore_ascii_case("8BITMIME"))
    }),
    ("SMTPUTF8", |v| v.is_none()),
    ("RET", |v| {
        v.is_some_and(|v| v.eq_ignore_ascii_case("FULL") || v.eq_ignore_ascii_case("HDRS"))
    }),
    ("ENVID", |v| {
        v.is_some_and(|v| v.len() <= 100 && is_xtext(v))
    }),
];

/// The parameters announced for RCPT: DSN (NOTIFY, ORCPT).
const RCPT_PARAMS: &[KnownParam] = &[
    ("NOTIFY", |v| v.is_some_and(valid_notify)),
    ("ORCPT", |v| v.is_some_and(valid_orcpt)),
];

/// Each word as `esmtp-keyword ["=" esmtp-value]`, a keyword this server announces for
/// the command, its value valid for it, no keyword twice.
fn check_params(words: &[&str], known: &[KnownParam]) -> Result<Vec<Param>, EnvelopeError> {
    let mut params: Vec<Param> = Vec::with_capacity(words.len());
    for word in words {
        let (keyword, value) = match word.split_once('=') {
            Some((k, v)) => (k, Some(v)),
            None => (*word, None),
        };
        let keyword_ok = keyword
            .bytes()
            .next()
            .is_some_and(|b| b.is_ascii_alphanumeric())
            && keyword
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-');
        // esmtp-value: 1*(%d33-60 / %d62-126 / UTF-8); `<` and `>` refused as well, so
        // that no downstream can read a value as the end or start of a path.
        let value_ok = value.is_none_or(|v| {
            !v.is_empty()
                && v.chars().all(|c| {
                    (('!'..='~').contains(&c) && !matches!(c, '=' | '<' | '>')) || !c.is_ascii()
                })
        });
        if !keyword_ok || !value_ok {
            return Err(EnvelopeError::BadParam);
        }
        let keyword = keyword.to_ascii_uppercase();
        let Some((_, check)) = known.iter().find(|(k, _)| *k == keyword) else {
            return Err(EnvelopeError::UnknownParam(keyword));
        };
        if !check(value) {
            return Err(EnvelopeError::BadParam);
        }
        if params.iter().any(|p| p.keyword == keyword) {
            return Err(EnvelopeError::DuplicateParam(keyword));
        }
        params.push(Param {
            keyword,
            value: value.map(str::to_string),
        });
    }
    Ok(params)
}

/// RFC 3461 xtext: printable ASCII but `+` and `=`, and `+XX` hex escapes.
fn is_xtext(v: &str) -> bool {
    let b = v.as_bytes();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => {
                if !(b.get(i + 1).is_some_and(u8::is_ascii_hexdigit)
                    && b.get(i + 2).is_some_and(u8::is_ascii_hexdigit))
                {
                    return false;
                }
                i += 3;
            }
            b'!'..=b'~' if b[i] != b'=' => i += 1,
            _ => return false,
        }
    }
    !v.is_empty()
}

/// `NEVER`, or a list of SUCCESS, FAILURE, DELAY (RFC 3461 4.1).
fn valid_notify(v: &str) -> bool {
    if v.eq_ignore_ascii_case("NEVER") {
        return true;
    }
    let words: Vec<String> = v.split(',').map(str::to_ascii_uppercase).collect();
    words
        .iter()
        .all(|w| matches!(w.as_str(), "SUCCESS" | "FAILURE" | "DELAY"))
        && (1..words.len()).all(|i| !words[..i].contains(&words[i]))
}

/// `addr-type ";" xtext` (RFC 3461 4.2); `utf-8` addresses may carry UTF-8 (RFC 6533).
fn valid_orcpt(v: &str) -> bool {
    let Some((kind, addr)) = v.split_once(';') else {
        return false;
    };
    let kind_ok = !kind.is_empty() && kind.chars().all(|c| c.is_ascii() && is_atext(c));
    let addr_ok = if kind.eq_ignore_ascii_case("utf-8") {
        !addr.is_empty()
    } else {
        is_xtext(addr)
    };
    kind_ok && addr_ok && v.len() <= 500
}

#[cfg(test)]
mod tests;
