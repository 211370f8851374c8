//! The optional note at the top of a cleaned HTML part (`Policy::banner`): "mailveil
//! removed 2 trackers (Mailchimp, Litmus) and cleaned 9 links", in English, Dutch or
//! German after `<html lang>` or the part's Content-Language.
//!
//! During the pass a slot marker is put right after `<body>`; once the pass (and the
//! link decisions after it) is done, the slot becomes the note, counted from this pass's
//! findings, or nothing. A part that already has a note (`data-mailveil-banner`, from
//! an earlier pass) gets no second one, so cleaning stays idempotent and the count is the
//! first pass's.

use crate::report::{Action, Finding, FindingKind};

/// Put after `<body>` during the pass; replaced or removed before the part leaves.
pub(crate) const SLOT: &str = "<!--mailveil-banner-slot-5c1e-->";

/// The attribute that marks a note, so a later pass leaves it alone.
pub(crate) const MARK: &str = "data-mailveil-banner";

/// The note for these findings, or `None` when nothing worth saying was done.
pub(crate) fn html(findings: &[Finding], lang: Option<&str>) -> Option<String> {
    let mut trackers = 0usize;
    let mut names: Vec<&str> = Vec::new();
    let mut links = 0usize;
    for f in findings {
        match (f.kind, f.action) {
            (FindingKind::Pixel | FindingKind::RecipientToken, Action::Strip) => {
                trackers += 1;
                if let Some(t) = f.tracker.as_deref()
                    && !names.contains(&t)
                {
                    names.push(t);
                }
            }
            (FindingKind::ClickRedirect, Action::Unwrap)
            | (FindingKind::TrackingParam, Action::Clean) => links += 1,
            _ => {}
        }
    }
    if trackers == 0 && links == 0 {
        return None;
    }
    let lang = language(lang);
    let names = if names.is_empty() {
        String::new()
    } else {
        names.truncate(4);
        format!(" ({})", names.join(", "))
    };
    let text = match lang {
        "nl" => {
            let t = format!(
                "{trackers} {}{names}",
                if trackers == 1 { "tracker" } else { "trackers" }
            );
            let l = format!("{links} {}", if links == 1 { "link" } else { "links" });
            match (trackers > 0, links > 0) {
                (true, true) => format!("mailveil heeft {t} verwijderd en {l} opgeschoond"),
                (true, false) => format!("mailveil heeft {t} verwijderd"),
                _ => format!("mailveil heeft {l} opgeschoond"),
            }
        }
        "de" => {
            let t = format!("{trackers} Tracker{names}");
            let l = format!("{links} Link{}", if links == 1 { "" } else { "s" });
            match (trackers > 0, links > 0) {
                (true, true) => format!("mailveil hat {t} entfernt und {l} bereinigt"),
                (true, false) => format!("mailveil hat {t} entfernt"),
                _ => format!("mailveil hat {l} bereinigt"),
            }
        }
        _ => {
            let t = format!(
                "{trackers} {}{names}",
                if trackers == 1 { "tracker" } else { "trackers" }
            );
            let l = format!("{links} {}", if links == 1 { "link" } else { "links" });
            match (trackers > 0, links > 0) {
                (true, true) => format!("mailveil removed {t} and cleaned {l}"),
                (true, false) => format!("mailveil removed {t}"),
                _ => format!("mailveil cleaned {l}"),
            }
        }
    };
    // Its own dark-on-light pair (about 15:1), whatever the mail's colours: a mail that
    // darkens its background without setting a text colour would otherwise hide the
    // note, and clients that invert colours for dark mode invert both alike.
    Some(format!(
        "<div {MARK}=\"1\" role=\"note\" lang=\"{lang}\" style=\"margin:0 0 12px 0;padding:6px 10px;\
border:1px solid #8c959f;border-radius:4px;background-color:#f6f8fa;color:#1f2328;\
font:13px/1.4 sans-serif;text-align:left\">{}</div>",
        escape(&text)
    ))
}

/// `en`, `nl` or `de` from a language tag list such as `de-DE` or `nl, en`.
fn language(tag: Option<&str>) -> &'static str {
    let first = tag
        .and_then(|t| t.split([',', ';']).next())
        .map(|t| t.trim().to_ascii_lowercase())
        .unwrap_or_default();
    let primary = first.split(['-', '_']).next().unwrap_or("");
    match primary {
        "nl" => "nl",
        "de" => "de",
        _ => "en",
    }
}

/// HTML text escaping; non-ASCII as numeric references, so any ASCII-compatible output
/// encoding carries it.
fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            c if c.is_ascii() && !c.is_ascii_control() => out.push(c),
            c if c.is_ascii_control() => out.push(' '),
            c => out.push_str(&format!("&#{};", c as u32)),
        }
    }
    out
}

/// Replaces the slot in `out` with the note (or removes it). `note` is `None` to remove.
pub(crate) fn fill(out: &mut Vec<u8>, note: Option<&str>) -> bool {
    let Some(at) = memchr::memmem::find(out, SLOT.as_bytes()) else {
        return false;
    };
    let note = note.unwrap_or("");
    out.splice(at..at + SLOT.len(), note.bytes());
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f(kind: FindingKind, action: Action, tracker: Option<&str>) -> Finding {
        Finding {
            kind,
            part: "1".into(),
            location: crate::report::Location::attribute(
                crate::report::LocationKind::Source,
                "img",
                "src",
            ),
            url: None,
            rule: "r".into(),
            tracker: tracker.map(String::from),
            action,
            params: Vec::new(),
        }
    }

    #[test]
    fn says_what_was_removed_in_the_mail_language() {
        let mut fs = vec![
            f(FindingKind::Pixel, Action::Strip, Some("Mailchimp")),
            f(FindingKind::Pixel, Action::Strip, Some("Litmus")),
        ];
        for _ in 0..9 {
            fs.push(f(FindingKind::TrackingParam, Action::Clean, None));
        }
        let en = html(&fs, None).unwrap();
        assert!(
            en.contains("mailveil removed 2 trackers (Mailchimp, Litmus) and cleaned 9 links"),
            "{en}"
        );
        assert!(en.contains("role=\"note\"") && en.contains(MARK));
        let nl = html(&fs, Some("nl-NL")).unwrap();
        assert!(
            nl.contains("verwijderd") && nl.contains("lang=\"nl\""),
            "{nl}"
        );
        let de = html(&fs, Some("de")).unwrap();
        assert!(
            de.contains("entfernt") && de.contains("9 Links bereinigt"),
            "{de}"
        );
        assert_eq!(
            html(&[f(FindingKind::RemoteContent, Action::Keep, None)], None),
            None
        );
    }

    #[test]
    fn names_are_escaped() {
        let fs = [f(FindingKind::Pixel, Action::Strip, Some("<b>Ü</b>"))];
        let note = html(&fs, None).unwrap();
        assert!(note.contains("&lt;b&gt;&#220;&lt;/b&gt;"), "{note}");
    }
}
