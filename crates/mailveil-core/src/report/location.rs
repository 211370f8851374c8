//! Where in a part a finding is: the kind of place, typed (what loads there and how,
//! which is what the proxy and the core's own rewrite go by), and its label for people
//! (`img@src`, `td@style:background-image`), which is what the JSON report, the store and
//! the dashboard show. The label is written from the same parts as the kind and never
//! read back.

use crate::proxy_url::ProxyKind;
use std::fmt;

/// What kind of place a finding is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum LocationKind {
    /// An element's source, loaded on open: `img@src`, `video@src`, SVG `image@href`,
    /// `lowsrc`, `dynsrc`, `object@data`.
    Source,
    /// A candidate of `srcset` or `imagesrcset`, loaded on open.
    Srcset,
    /// A `background` attribute (tables, cells, body), loaded on open.
    Background,
    /// A video's `poster`, loaded on open.
    Poster,
    /// A `url()` or `image-set()` value in CSS (a `style` attribute or a `<style>`
    /// sheet): an image, loaded on open.
    CssUrl,
    /// An `@import` in CSS: a style sheet, loaded on open.
    CssImport,
    /// `<link rel=stylesheet href>`: a style sheet, loaded on open.
    Stylesheet,
    /// A link's target (`a@href`, `area@href`, a VML button's `href`): followed on a
    /// click.
    Link,
    /// A URL in text: followed on a click.
    TextLink,
    /// Script in CSS (`expression()`, `behavior`), in a `style` attribute or a sheet.
    CssScript,
    /// An attribute removed for what it does: an event handler, `ping`, `manifest`.
    Attribute,
    /// An element removed whole: script, frames, `<meta http-equiv>`, `<base>`, hint
    /// `<link>`s.
    Element,
    /// A field of the top header.
    Header,
    /// A MIME part as a whole: signed, encrypted, damaged, too large.
    Part,
}

impl LocationKind {
    /// What the proxy serves for a URL found here: an image (`/i/`), a style sheet whose
    /// URLs it rewrites (`/s/`), or a link through the shield (`/l/`); `None` where no
    /// URL is sent through the proxy. The core writes proxy URLs by it and the proxy
    /// prefetches by it.
    pub fn proxy_kind(self) -> Option<ProxyKind> {
        match self {
            LocationKind::Source
            | LocationKind::Srcset
            | LocationKind::Background
            | LocationKind::Poster
            | LocationKind::CssUrl => Some(ProxyKind::Image),
            LocationKind::CssImport | LocationKind::Stylesheet => Some(ProxyKind::Style),
            LocationKind::Link | LocationKind::TextLink => Some(ProxyKind::Link),
            LocationKind::CssScript
            | LocationKind::Attribute
            | LocationKind::Element
            | LocationKind::Header
            | LocationKind::Part => None,
        }
    }
}

/// Where in a part a finding is: its kind, and its label for people.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Location {
    kind: LocationKind,
    label: String,
}

impl Location {
    /// An attribute of an element: `img@src`, `td@background`, `a@href`, `body@onload`.
    pub fn attribute(kind: LocationKind, tag: &str, attribute: &str) -> Location {
        // Built by hand: `format!` cost five times as much, once per link and image
        // (issue 17).
        let mut label = String::with_capacity(tag.len() + 1 + attribute.len());
        label.push_str(tag);
        label.push('@');
        label.push_str(attribute);
        Location { kind, label }
    }

    /// A value in CSS: in the `style` attribute of `tag`, or with no tag in a `<style>`
    /// sheet; `property` is the one a URL is a value of (`@import` for an import), none
    /// for script in CSS. `td@style:background-image`, `<style>:@import`, `<style>`.
    pub fn css(kind: LocationKind, tag: Option<&str>, property: Option<&str>) -> Location {
        let mut label = match tag {
            Some(tag) => [tag, "@style"].concat(),
            None => "<style>".to_string(),
        };
        if let Some(p) = property {
            label.push(':');
            label.push_str(p);
        }
        Location { kind, label }
    }

    /// An element removed whole: `script`, `meta`, `link`.
    pub fn element(tag: &str) -> Location {
        Location {
            kind: LocationKind::Element,
            label: tag.to_string(),
        }
    }

    /// A URL in text: `text`.
    pub fn text() -> Location {
        Location {
            kind: LocationKind::TextLink,
            label: "text".to_string(),
        }
    }

    /// A field of the top header: `header:Disposition-Notification-To`.
    pub fn header(name: &str) -> Location {
        Location {
            kind: LocationKind::Header,
            label: format!("header:{name}"),
        }
    }

    /// A MIME part as a whole, said by what it is or what is wrong with it:
    /// `application/pkcs7-mime`, `body`.
    pub fn part(what: &str) -> Location {
        Location {
            kind: LocationKind::Part,
            label: what.to_string(),
        }
    }

    /// The kind of place.
    pub fn kind(&self) -> LocationKind {
        self.kind
    }

    /// The label: what the JSON report's `location` and the store hold.
    pub fn as_str(&self) -> &str {
        &self.label
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.label)
    }
}

/// Written as its label: the JSON report's `location` is the string it always was.
impl serde::Serialize for Location {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.label)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_written_from_their_parts() {
        let cases = [
            (
                Location::attribute(LocationKind::Source, "img", "src"),
                "img@src",
            ),
            (
                Location::attribute(LocationKind::Poster, "video", "poster"),
                "video@poster",
            ),
            (
                Location::css(LocationKind::CssUrl, Some("td"), Some("background-image")),
                "td@style:background-image",
            ),
            (
                Location::css(LocationKind::CssImport, None, Some("@import")),
                "<style>:@import",
            ),
            (
                Location::css(LocationKind::CssScript, None, None),
                "<style>",
            ),
            (
                Location::css(LocationKind::CssScript, Some("p"), None),
                "p@style",
            ),
            (Location::element("script"), "script"),
            (Location::text(), "text"),
            (
                Location::header("Return-Receipt-To"),
                "header:Return-Receipt-To",
            ),
            (Location::part("body"), "body"),
        ];
        for (loc, label) in cases {
            assert_eq!(loc.as_str(), label);
            assert_eq!(loc.to_string(), label);
            assert_eq!(serde_json::to_string(&loc).unwrap(), format!("\"{label}\""));
        }
    }

    /// The kind, not the label, says what the proxy serves: a sheet imported from a
    /// `style` attribute is a sheet, and an element whose tag reads like a place
    /// (`<link@href>` can be a custom element's name) is an element.
    #[test]
    fn what_the_proxy_serves_comes_from_the_kind() {
        let import = Location::css(LocationKind::CssImport, Some("td"), Some("@import"));
        assert_eq!(import.kind().proxy_kind(), Some(ProxyKind::Style));
        let sheet = Location::attribute(LocationKind::Stylesheet, "link", "href");
        assert_eq!(sheet.kind().proxy_kind(), Some(ProxyKind::Style));
        for kind in [
            LocationKind::Source,
            LocationKind::Srcset,
            LocationKind::Background,
            LocationKind::Poster,
            LocationKind::CssUrl,
        ] {
            assert_eq!(kind.proxy_kind(), Some(ProxyKind::Image), "{kind:?}");
        }
        assert_eq!(LocationKind::Link.proxy_kind(), Some(ProxyKind::Link));
        assert_eq!(LocationKind::TextLink.proxy_kind(), Some(ProxyKind::Link));
        let odd = Location::element("link@href");
        assert_eq!(odd.as_str(), "link@href");
        assert_eq!(odd.kind().proxy_kind(), None);
        assert_eq!(Location::header("X").kind().proxy_kind(), None);
    }
}
