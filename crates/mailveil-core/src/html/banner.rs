//! The optional note at the top of a cleaned HTML part (`Policy::banner`): "mailveil
//! removed 2 trackers (Mailchimp, Litmus) and cleaned 9 links", in English, Dutch or
//! German after `<html lang>` or the part's Content-Language.
//!
//! The note sits inside the mail's layout, as wide as its content: a newsletter is a
//! fixed-width column (a 600 px table or a `max-width:600px` div) centred in the window,
//! and a note edge to edge above it looks like no part of the mail. So during the pass a
//! slot marker is put right after `<body>`, and another at each new widest visible
//! layout element (before a `<table>`, inside a `<div>`, `<td>` or `<center>`); once the
//! pass (and the link decisions after it) is done, the last of those (the widest, first
//! of equals) becomes the note with that width as its `max-width`, centred, or the
//! `<body>` slot does when the mail has no fixed width. The others are removed. The note
//! counts this pass's findings, each link once. A part that already has a note
//! (`data-mailveil-banner`, from an earlier pass) gets no second one, so cleaning stays
//! idempotent and the count is the first pass's.

use crate::report::{Action, Finding, FindingKind};

/// Put after `<body>` during the pass; replaced or removed before the part leaves.
pub(crate) const SLOT: &str = "<!--mailveil-banner-slot-5c1e-->";

/// The attribute that marks a note, so a later pass leaves it alone.
pub(crate) const MARK: &str = "data-mailveil-banner";

/// The elements whose fixed width sets the layout's: a newsletter is a 600 px table
/// (`<table width="600" align="center">`) or a `<div style="max-width:600px;margin:0
/// auto">` (MJML and most builders), often inside a 100% wide outer table.
pub(crate) const LAYOUT_ELEMENTS: &str = "table, td, div, center";

/// Widths outside this range are not a layout: spacers and columns below, and nothing
/// a reader's window shows whole above.
const LAYOUT_WIDTHS: std::ops::RangeInclusive<u32> = 200..=1600;

/// The fixed width in CSS pixels that an element sets for the content: its `width`
/// attribute (`600`, `600px`), or a `width` / `max-width` in px in its style. Percentages
/// and other units are not fixed.
pub(crate) fn fixed_width(el: &lol_html::html_content::Element) -> Option<u32> {
    let px = |v: &str| -> Option<u32> {
        let v = v.trim().trim_end_matches("!important").trim();
        let n = v.strip_suffix("px").unwrap_or(v).trim();
        let n: f64 = n.parse().ok()?;
        let n = n.round();
        (n.is_finite() && n >= 0.0 && n <= f64::from(u32::MAX)).then_some(n as u32)
    };
    let from_attr = el.get_attribute("width").and_then(|w| px(&w));
    let from_style = el.get_attribute("style").and_then(|style| {
        style
            .split(';')
            .filter_map(|d| d.split_once(':'))
            .filter(|(name, _)| {
                let name = name.trim();
                name.eq_ignore_ascii_case("width") || name.eq_ignore_ascii_case("max-width")
            })
            .filter(|(_, value)| value.trim().to_ascii_lowercase().contains("px"))
            .filter_map(|(_, value)| px(&value.to_ascii_lowercase()))
            .max()
    });
    [from_attr, from_style]
        .into_iter()
        .flatten()
        .filter(|w| LAYOUT_WIDTHS.contains(w))
        .max()
}

/// The note for these findings, or `None` when nothing worth saying was done. `links`
/// is how many links were unwrapped or cleaned (each once, whatever it took); `width` is
/// the widest fixed width of the mail's layout, which the note does not exceed.
pub(crate) fn html(
    findings: &[Finding],
    links: usize,
    width: Option<u32>,
    lang: Option<&str>,
) -> Option<String> {
    let mut trackers = 0usize;
    let mut names: Vec<&str> = Vec::new();
    for f in findings {
        if let (FindingKind::Pixel | FindingKind::RecipientToken, Action::Strip) =
            (f.kind, f.action)
        {
            trackers += 1;
            if let Some(t) = f.tracker.as_deref()
                && !names.contains(&t)
            {
                names.push(t);
            }
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
    // As wide as the mail's own layout, centred as newsletters centre it, never edge to
    // edge over a 600 px mail; a fluid mail (no fixed width) is as wide as the window,
    // and so is the note.
    let box_width = match width {
        Some(w) => format!("max-width:{w}px;margin:0 auto 12px auto;box-sizing:border-box;"),
        None => "margin:0 0 12px 0;".to_string(),
    };
    // Its own dark-on-light pair (about 15:1), whatever the mail's colours: a mail that
    // darkens its background without setting a text colour would otherwise hide the
    // note, and clients that invert colours for dark mode invert both alike.
    Some(format!(
        "<div {MARK}=\"1\" role=\"note\" lang=\"{lang}\" style=\"{box_width}padding:6px 10px;\
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

/// At most this many layout slots in one part (each one a new widest element): a mail
/// of ever wider tables gets no more markers than this.
const MAX_LAYOUT_SLOTS: u32 = 16;

/// The marker of the `i`th layout slot.
fn layout_slot(i: u32) -> String {
    format!("<!--mailveil-banner-layout-5c1e-{i}-->")
}

/// A layout element of the pass: when it is visible and wider than any before, it gets
/// a slot (before a table, whose first child would be foster-parented out of it; as the
/// first child of anything else) and its width is the layout's.
pub(crate) fn on_layout_element(
    el: &mut lol_html::html_content::Element,
    state: &std::cell::RefCell<super::State>,
) {
    let mut st = state.borrow_mut();
    if st.hidden_depth.get() > 0 || st.layout_slots >= MAX_LAYOUT_SLOTS {
        return;
    }
    let Some(width) = fixed_width(el).filter(|w| Some(*w) > st.widest) else {
        return;
    };
    let slot = layout_slot(st.layout_slots);
    if el.tag_name().eq_ignore_ascii_case("table") {
        el.before(&slot, lol_html::html_content::ContentType::Html);
    } else {
        el.prepend(&slot, lol_html::html_content::ContentType::Html);
    }
    st.layout_slots += 1;
    st.widest = Some(width);
}

/// Puts the note (or nothing, for `None`) in layout slot `layout` when given and still
/// there, else in the `<body>` slot; removes every other slot. `false` when the note
/// found no slot.
pub(crate) fn fill(out: &mut Vec<u8>, note: Option<&str>, layout: Option<u32>) -> bool {
    let mut placed = false;
    let put = |out: &mut Vec<u8>, marker: &str, text: &str| {
        let Some(at) = memchr::memmem::find(out, marker.as_bytes()) else {
            return false;
        };
        out.splice(at..at + marker.len(), text.bytes());
        true
    };
    if let (Some(i), Some(text)) = (layout, note) {
        placed = put(out, &layout_slot(i), text);
    }
    for i in 0..layout.map_or(0, |i| i + 1) {
        put(out, &layout_slot(i), "");
    }
    let body = if placed { "" } else { note.unwrap_or("") };
    let in_body = put(out, SLOT, body);
    placed || (in_body && note.is_some())
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
        let fs = vec![
            f(FindingKind::Pixel, Action::Strip, Some("Mailchimp")),
            f(FindingKind::Pixel, Action::Strip, Some("Litmus")),
            f(FindingKind::TrackingParam, Action::Clean, None),
        ];
        let html = |fs: &[Finding], lang| html(fs, 9, None, lang);
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
            super::html(
                &[f(FindingKind::RemoteContent, Action::Keep, None)],
                0,
                None,
                None
            ),
            None
        );
    }

    #[test]
    fn the_note_is_no_wider_than_the_layout() {
        let fs = [f(FindingKind::Pixel, Action::Strip, None)];
        let fixed = html(&fs, 0, Some(600), None).unwrap();
        assert!(
            fixed.contains("max-width:600px;margin:0 auto 12px auto;box-sizing:border-box;"),
            "{fixed}"
        );
        let fluid = html(&fs, 0, None, None).unwrap();
        assert!(
            !fluid.contains("max-width") && fluid.contains("margin:0 0 12px 0;"),
            "{fluid}"
        );
    }

    #[test]
    fn names_are_escaped() {
        let fs = [f(FindingKind::Pixel, Action::Strip, Some("<b>Ü</b>"))];
        let note = html(&fs, 0, None, None).unwrap();
        assert!(note.contains("&lt;b&gt;&#220;&lt;/b&gt;"), "{note}");
    }
}
