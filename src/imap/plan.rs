//! The pure side of the IMAP sweep: what is already done (the state kept between runs),
//! what to do with one message, and the small conversions the client needs. No I/O.

use mailveil_core::MessageFacts;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// What was handled, per folder. UIDs are only meaningful under one UIDVALIDITY: when
/// the server changes it, the folder starts over (a re-run then finds the cleaned copies
/// unchanged and only records them).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct State {
    /// Format version of the file.
    pub version: u32,
    /// Folder name -> its state.
    pub folders: BTreeMap<String, FolderState>,
}

/// The UIDs of one folder that need no more work.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FolderState {
    pub uidvalidity: u32,
    /// Sorted, non-overlapping, non-adjacent inclusive ranges.
    pub done: Vec<(u32, u32)>,
    /// Originals whose cleaned copy was being appended: after a crash a copy of them
    /// may already be in the folder.
    #[serde(default)]
    pub pending: Vec<u32>,
}

impl FolderState {
    /// Whether `uid` needs no more work.
    pub fn is_done(&self, uid: u32) -> bool {
        let i = self.done.partition_point(|&(_, hi)| hi < uid);
        self.done.get(i).is_some_and(|&(lo, _)| lo <= uid)
    }

    /// Records that the cleaned copy of `uid` is about to be appended.
    pub fn mark_pending(&mut self, uid: u32) {
        if !self.pending.contains(&uid) {
            self.pending.push(uid);
        }
    }

    /// Whether an APPEND for `uid` was started and not finished.
    pub fn is_pending(&self, uid: u32) -> bool {
        self.pending.contains(&uid)
    }

    /// Records `uid` as done, merging ranges.
    pub fn mark(&mut self, uid: u32) {
        self.pending.retain(|&p| p != uid);
        if self.is_done(uid) {
            return;
        }
        let i = self.done.partition_point(|&(_, hi)| hi < uid);
        self.done.insert(i, (uid, uid));
        // merge with the right neighbour, then the left one
        if i + 1 < self.done.len() && self.done[i + 1].0 == uid.saturating_add(1) {
            self.done[i].1 = self.done[i + 1].1;
            self.done.remove(i + 1);
        }
        if i > 0 && self.done[i - 1].1.saturating_add(1) == uid {
            self.done[i - 1].1 = self.done[i].1;
            self.done.remove(i);
        }
    }
}

impl State {
    /// The state of `folder` under `uidvalidity` (reset when it changed).
    pub fn folder(&mut self, folder: &str, uidvalidity: u32) -> &mut FolderState {
        let f = self.folders.entry(folder.to_string()).or_default();
        if f.uidvalidity != uidvalidity {
            *f = FolderState {
                uidvalidity,
                ..FolderState::default()
            };
        }
        f
    }

    /// Parses a state file (an empty file is an empty state).
    pub fn parse(text: &str) -> Result<State, String> {
        if text.trim().is_empty() {
            return Ok(State::default());
        }
        serde_json::from_str(text).map_err(|e| format!("state file: {e}"))
    }

    /// The file's text.
    pub fn to_text(&self) -> String {
        let mut s = serde_json::to_string_pretty(&State {
            version: 1,
            ..self.clone()
        })
        .unwrap_or_default();
        s.push('\n');
        s
    }
}

/// The UIDs to look at, in ascending order.
pub fn todo(all: impl IntoIterator<Item = u32>, state: &FolderState) -> Vec<u32> {
    let mut v: Vec<u32> = all.into_iter().filter(|&u| !state.is_done(u)).collect();
    v.sort_unstable();
    v.dedup();
    v
}

/// At most this many messages are fetched to look for the copy of a pending original.
pub const MAX_CANDIDATES: usize = 20;

/// What to do with one fetched message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Cleaning would not change it (already cleaned, or nothing to do): only record it.
    Skip,
    /// A cleaned copy equal to ours is already in the folder (an earlier run stopped
    /// between the APPEND and removing the original): only move the original away.
    FinishMove { copy_uid: u32 },
    /// Append the cleaned copy, then move the original away.
    Replace,
}

/// Decides for one message, given whether cleaning changed it, whether an earlier run
/// had started appending its copy, and the candidates found by its Message-ID that are
/// not recorded as done (their UIDs and bytes). Only a pending original looks for an
/// existing copy: two identical mails that were never pending both get their copy.
pub fn decide(
    changed: bool,
    pending: bool,
    cleaned: &[u8],
    candidates: &[(u32, Vec<u8>)],
) -> Decision {
    if !changed {
        return Decision::Skip;
    }
    if !pending {
        return Decision::Replace;
    }
    for (uid, bytes) in candidates {
        if same_message(bytes, cleaned) {
            return Decision::FinishMove { copy_uid: *uid };
        }
    }
    Decision::Replace
}

/// Byte equality up to line endings (a server may store LF and give back CRLF).
pub fn same_message(a: &[u8], b: &[u8]) -> bool {
    let strip = |x: &[u8]| -> Vec<u8> { x.iter().copied().filter(|&c| c != b'\r').collect() };
    a == b || strip(a) == strip(b)
}

/// Whether cleaning only put the report header on top (nothing was tracking the
/// reader): such a mail is left where it is, rather than rewriting the whole mailbox to
/// add a header.
pub fn only_header_added(raw: &[u8], cleaned: &[u8]) -> bool {
    let name = mailveil_core::HEADER_NAME.as_bytes();
    if cleaned.len() < name.len() + 1
        || !cleaned[..name.len()].eq_ignore_ascii_case(name)
        || cleaned[name.len()] != b':'
    {
        return false;
    }
    // skip the field with its folded continuation lines
    let mut at = 0;
    loop {
        let Some(nl) = cleaned[at..].iter().position(|&b| b == b'\n') else {
            return false;
        };
        at += nl + 1;
        if !matches!(cleaned.get(at), Some(b' ' | b'\t')) {
            break;
        }
    }
    same_message(&cleaned[at..], raw)
}

/// The Message-ID of a message (as the core's header reader finds it, without angle
/// brackets: IMAP's HEADER search matches a substring, and an id written without them
/// is found too), if it is searchable: no quotes, backslashes or line breaks that could
/// break the IMAP command.
pub fn message_id(raw: &[u8]) -> Option<String> {
    let id = MessageFacts::read(raw).message_id()?;
    let ok = id.len() <= 250
        && id
            .chars()
            .all(|c| c.is_ascii_graphic() && c != '"' && c != '\\');
    ok.then_some(id)
}

/// `YYYY-MM-DD` as an IMAP search date (`1-Feb-2024`).
pub fn imap_date(date: &str) -> Result<String, String> {
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let bad = || format!("bad date {date:?}: use YYYY-MM-DD");
    let mut it = date.trim().split('-');
    let (Some(y), Some(m), Some(d), None) = (it.next(), it.next(), it.next(), it.next()) else {
        return Err(bad());
    };
    let y: u32 = y.parse().map_err(|_| bad())?;
    let m: usize = m.parse().map_err(|_| bad())?;
    let d: u32 = d.parse().map_err(|_| bad())?;
    if !(1..=12).contains(&m) || !(1..=31).contains(&d) || !(1900..=9999).contains(&y) {
        return Err(bad());
    }
    Ok(format!("{d}-{}-{y}", MONTHS[m - 1]))
}

/// The flags to give the cleaned copy: the original's, less `\Recent` (servers refuse it
/// in APPEND) and `\Deleted`; as an IMAP flag list.
pub fn append_flags<S: AsRef<str>>(flags: &[S]) -> String {
    let kept: Vec<&str> = flags
        .iter()
        .map(AsRef::as_ref)
        .filter(|f| {
            !f.eq_ignore_ascii_case("\\Recent")
                && !f.eq_ignore_ascii_case("\\Deleted")
                && !f.is_empty()
                && f.chars()
                    .all(|c| c.is_ascii_graphic() && !"(){%*\"]".contains(c))
        })
        .collect();
    format!("({})", kept.join(" "))
}

/// A mailbox name as an IMAP quoted string.
pub fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        if c == '"' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
    out
}

/// The server URL split up: (tls, host, port).
pub fn parse_server(url: &str) -> Result<(bool, String, u16), String> {
    let (tls, rest) = if let Some(r) = url.strip_prefix("imaps://") {
        (true, r)
    } else if let Some(r) = url.strip_prefix("imap://") {
        (false, r)
    } else {
        return Err(format!(
            "bad server {url:?}: use imaps://HOST[:PORT] (or imap:// for plain connections)"
        ));
    };
    let rest = rest.trim_end_matches('/');
    let default = if tls { 993 } else { 143 };
    let (host, port) = match rest.rsplit_once(':') {
        Some((h, p)) if !h.ends_with(']') || rest.starts_with('[') => {
            (h, p.parse().map_err(|_| format!("bad port in {url:?}"))?)
        }
        _ => (rest, default),
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.is_empty() {
        return Err(format!("no host in {url:?}"));
    }
    Ok((tls, host.to_string(), port))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_merge_and_membership() {
        let mut f = FolderState::default();
        for u in [5, 3, 4, 10, 1, 2, 12, 11, 4] {
            f.mark(u);
        }
        assert_eq!(f.done, vec![(1, 5), (10, 12)]);
        assert!(f.is_done(1) && f.is_done(5) && f.is_done(11));
        assert!(!f.is_done(6) && !f.is_done(9) && !f.is_done(13) && !f.is_done(0));
        assert_eq!(todo([1, 6, 12, 13, 9, 6], &f), vec![6, 9, 13]);
        f.mark(u32::MAX);
        assert!(f.is_done(u32::MAX));
    }

    #[test]
    fn uidvalidity_change_starts_over_and_state_round_trips() {
        let mut s = State::default();
        s.folder("INBOX", 7).mark(3);
        assert!(s.folder("INBOX", 7).is_done(3));
        let text = s.to_text();
        let mut back = State::parse(&text).unwrap();
        assert!(back.folder("INBOX", 7).is_done(3));
        assert!(!back.folder("INBOX", 8).is_done(3), "new UIDVALIDITY");
        assert_eq!(State::parse("").unwrap(), State::default());
        assert!(State::parse("{not json").is_err());
    }

    #[test]
    fn decisions() {
        let cands = [(4, b"other".to_vec()), (9, b"a\nb".to_vec())];
        assert_eq!(decide(false, true, b"x", &cands), Decision::Skip);
        assert_eq!(decide(true, true, b"a\r\nb", &[]), Decision::Replace);
        assert_eq!(
            decide(true, true, b"a\r\nb", &cands),
            Decision::FinishMove { copy_uid: 9 }
        );
        // not pending: an identical mail elsewhere in the folder is not our copy
        assert_eq!(decide(true, false, b"a\r\nb", &cands), Decision::Replace);
        let mut f = FolderState::default();
        f.mark_pending(3);
        assert!(f.is_pending(3));
        f.mark(3);
        assert!(!f.is_pending(3) && f.is_done(3));
    }

    #[test]
    fn a_header_alone_is_no_reason_to_rewrite() {
        let raw = b"Subject: hi\r\n\r\ntext\r\n";
        let with = b"X-Mailveil: v=0.1.0; a=1;\r\n\tb=2\r\nSubject: hi\r\n\r\ntext\r\n";
        assert!(only_header_added(raw, with));
        let changed = b"X-Mailveil: v=0.1.0\r\nSubject: hi\r\n\r\nother\r\n";
        assert!(!only_header_added(raw, changed));
        assert!(!only_header_added(raw, raw));
    }

    #[test]
    fn message_ids() {
        assert_eq!(
            message_id(b"Subject: x\r\nMessage-Id: <a.b@c>\r\n\r\nMessage-ID: <no@body>"),
            Some("a.b@c".into())
        );
        assert_eq!(
            message_id(b"Message-ID:\r\n <folded@x>\r\n\r\n"),
            Some("folded@x".into())
        );
        assert_eq!(
            message_id(b"Message-ID: bare@x\r\n\r\n"),
            Some("bare@x".into())
        );
        assert_eq!(message_id(b"Message-ID: <a\"b@c>\r\n\r\n"), None);
        assert_eq!(message_id(b"Subject: none\r\n\r\nMessage-ID: <x@y>"), None);
    }

    #[test]
    fn dates_flags_names_servers() {
        assert_eq!(imap_date("2024-02-01").unwrap(), "1-Feb-2024");
        assert!(imap_date("2024-13-01").is_err());
        assert!(imap_date("yesterday").is_err());
        assert_eq!(
            append_flags(&["\\Seen", "\\Recent", "$Forwarded", "\\Deleted", "bad(flag"]),
            "(\\Seen $Forwarded)"
        );
        assert_eq!(append_flags::<&str>(&[]), "()");
        assert_eq!(quote("a\"b\\c"), "\"a\\\"b\\\\c\"");
        assert_eq!(
            parse_server("imaps://mail.example.org").unwrap(),
            (true, "mail.example.org".into(), 993)
        );
        assert_eq!(
            parse_server("imap://127.0.0.1:1143").unwrap(),
            (false, "127.0.0.1".into(), 1143)
        );
        assert!(parse_server("http://x").is_err());
        assert!(parse_server("imaps://:99").is_err());
    }
}
