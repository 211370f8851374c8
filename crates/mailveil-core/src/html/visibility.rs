//! Images that cannot be seen: the tell of an open pixel whose URL no rule knows.
//! Size by attribute or CSS (0-3 px), display:none, visibility:hidden, opacity:0,
//! max-height:0, off-screen positioning, the `hidden` attribute, and classes or ids
//! that a `<style>` rule hides. Known false positives are kept: wide 1 px rules and
//! spacers (one side large), and images that an `@media` rule shows on some screens.

use super::css::{RuleText, declarations};
use std::collections::HashSet;

/// Selectors a message's stylesheets hide, and those they show or hide per screen.
#[derive(Debug, Default, Clone)]
pub struct HiddenSelectors {
    hidden: HashSet<String>,
    responsive: HashSet<String>,
}

impl HiddenSelectors {
    /// Learns from the rules of one `<style>` block.
    pub fn learn(&mut self, rules: &[RuleText]) {
        for rule in rules {
            let names = simple_names(&rule.selectors);
            if rule.in_media {
                self.responsive.extend(names);
            } else if hides(&declarations(&rule.declarations)) {
                self.hidden.extend(names);
            }
        }
    }

    fn hides_element(&self, class: Option<&str>, id: Option<&str>) -> bool {
        let names: Vec<String> = class
            .unwrap_or("")
            .split_ascii_whitespace()
            .map(|c| format!(".{c}"))
            .chain(id.map(|i| format!("#{}", i.trim())))
            .collect();
        names.iter().any(|n| self.hidden.contains(n))
            && !names.iter().any(|n| self.responsive.contains(n))
    }

    fn responsive(&self, class: Option<&str>, id: Option<&str>) -> bool {
        class
            .unwrap_or("")
            .split_ascii_whitespace()
            .any(|c| self.responsive.contains(&format!(".{c}")))
            || id.is_some_and(|i| self.responsive.contains(&format!("#{}", i.trim())))
    }
}

/// The `.class` and `#id` names at the end of each selector (`div.a img.b` gives `.b`).
fn simple_names(selectors: &str) -> Vec<String> {
    let mut out = Vec::new();
    for sel in selectors.split(',') {
        let last = sel
            .split(|c: char| c.is_whitespace() || c == '>' || c == '+' || c == '~')
            .rfind(|s| !s.is_empty())
            .unwrap_or("");
        let mut rest = last;
        while let Some(i) = rest.find(['.', '#']) {
            let tail = &rest[i + 1..];
            let end = tail
                .find(|c: char| !(c.is_alphanumeric() || c == '-' || c == '_'))
                .unwrap_or(tail.len());
            out.push(format!("{}{}", &rest[i..=i], &tail[..end]));
            rest = &tail[end..];
        }
    }
    out
}

/// The attributes of an image that decide whether it can be seen.
#[derive(Debug, Default, Clone, Copy)]
#[allow(missing_docs)] // the HTML attributes of the same names
pub struct ImageAttrs<'a> {
    pub width: Option<&'a str>,
    pub height: Option<&'a str>,
    pub style: Option<&'a str>,
    pub class: Option<&'a str>,
    pub id: Option<&'a str>,
    pub hidden: bool,
}

/// Why an image cannot be seen, or `None` if it can.
pub fn invisible(img: &ImageAttrs, sheets: &HiddenSelectors) -> Option<&'static str> {
    if img.hidden {
        return Some("hidden-attribute");
    }
    // An image that an @media rule shows on some screens is responsive: its inline CSS
    // (display:none;width:0 on desktop) says nothing about tracking.
    let responsive = sheets.responsive(img.class, img.id);
    let decls = if responsive {
        Vec::new()
    } else {
        img.style.map(declarations).unwrap_or_default()
    };
    let css = |name: &str| {
        decls
            .iter()
            .rev()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    };
    let width = css("width").and_then(px).or_else(|| img.width.and_then(px));
    let height = css("height")
        .and_then(px)
        .or_else(|| img.height.and_then(px));
    let (w_given, h_given) = (
        css("width").or(img.width).is_some(),
        css("height").or(img.height).is_some(),
    );
    if width == Some(0) || height == Some(0) {
        return Some("zero-size");
    }
    let tiny = |v: Option<u32>| v.is_some_and(|v| v <= 3);
    let sized_tiny =
        (tiny(width) && tiny(height)) || (tiny(width) && !h_given) || (tiny(height) && !w_given);
    if sized_tiny {
        return Some("tiny-size");
    }
    if hides(&decls) {
        return Some("css-hidden");
    }
    if !responsive && sheets.hides_element(img.class, img.id) {
        return Some("stylesheet-hidden");
    }
    if off_screen(&decls) {
        return Some("off-screen");
    }
    None
}

/// Why an element hides everything inside it (an `<img>` in it is never seen, but a
/// client still fetches it), or `None`. Only what hides for certain counts here:
/// `display:none`, `visibility:hidden`, the `hidden` attribute, a class or id that a
/// `<style>` rule hides; an element an `@media` rule shows on some screens does not.
pub fn hides_content(
    style: Option<&str>,
    class: Option<&str>,
    id: Option<&str>,
    hidden: bool,
    sheets: &HiddenSelectors,
) -> Option<&'static str> {
    if sheets.responsive(class, id) {
        return None;
    }
    if hidden {
        return Some("hidden-ancestor");
    }
    let decls = style.map(declarations).unwrap_or_default();
    let hiding = decls.iter().any(|(n, v)| {
        (n == "display" && v == "none") || (n == "visibility" && (v == "hidden" || v == "collapse"))
    });
    if hiding || sheets.hides_element(class, id) {
        return Some("hidden-ancestor");
    }
    None
}

/// Whether declarations make an element invisible.
fn hides(decls: &[(String, String)]) -> bool {
    decls.iter().any(|(name, value)| match name.as_str() {
        "display" => value == "none",
        "visibility" => value == "hidden" || value == "collapse",
        "opacity" => value.parse::<f32>().is_ok_and(|o| o <= 0.01),
        "max-height" | "max-width" | "width" | "height" => px(value) == Some(0),
        _ => false,
    })
}

fn off_screen(decls: &[(String, String)]) -> bool {
    let positioned = decls
        .iter()
        .any(|(n, v)| n == "position" && (v == "absolute" || v == "fixed"));
    positioned
        && decls.iter().any(|(n, v)| {
            matches!(n.as_str(), "left" | "top" | "right" | "bottom")
                && v.strip_prefix('-').and_then(px).is_some_and(|d| d >= 500)
        })
}

/// A length in CSS px from an attribute (`1`, `1px`) or CSS value; `None` for
/// percentages, `auto` and the like.
fn px(value: &str) -> Option<u32> {
    let v = value.trim();
    let v = v.strip_suffix("px").unwrap_or(v).trim();
    if v.is_empty() || v.contains('%') {
        return None;
    }
    let n: f32 = v.parse().ok()?;
    (n >= 0.0).then_some(n.round() as u32)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(img: ImageAttrs) -> Option<&'static str> {
        invisible(&img, &HiddenSelectors::default())
    }

    #[test]
    fn tiny_and_zero_images_are_invisible() {
        assert_eq!(
            check(ImageAttrs {
                width: Some("1"),
                height: Some("1"),
                ..Default::default()
            }),
            Some("tiny-size")
        );
        assert_eq!(
            check(ImageAttrs {
                width: Some("0"),
                height: Some("0"),
                ..Default::default()
            }),
            Some("zero-size")
        );
        assert_eq!(
            check(ImageAttrs {
                style: Some("width:1px;height:1px"),
                ..Default::default()
            }),
            Some("tiny-size")
        );
        assert_eq!(
            check(ImageAttrs {
                width: Some("2"),
                ..Default::default()
            }),
            Some("tiny-size")
        );
    }

    #[test]
    fn wide_rules_and_tall_gradients_are_visible() {
        assert_eq!(
            check(ImageAttrs {
                width: Some("620"),
                height: Some("1"),
                ..Default::default()
            }),
            None
        );
        assert_eq!(
            check(ImageAttrs {
                width: Some("1"),
                height: Some("100"),
                ..Default::default()
            }),
            None
        );
        assert_eq!(
            check(ImageAttrs {
                width: Some("100%"),
                height: Some("1"),
                ..Default::default()
            }),
            None
        );
    }

    #[test]
    fn css_hiding_is_invisible() {
        for style in [
            "display:none",
            "visibility: hidden",
            "opacity:0",
            "max-height:0px;overflow:hidden",
            "position:absolute;left:-9999px",
        ] {
            assert!(
                check(ImageAttrs {
                    style: Some(style),
                    ..Default::default()
                })
                .is_some(),
                "{style}"
            );
        }
        assert_eq!(
            check(ImageAttrs {
                style: Some("display:block;opacity:1"),
                ..Default::default()
            }),
            None
        );
    }

    #[test]
    fn containers_hide_by_display_visibility_attribute_or_class_but_not_responsively() {
        let mut sheets = HiddenSelectors::default();
        sheets.learn(&[
            RuleText {
                selectors: ".gone".into(),
                declarations: "display:none".into(),
                in_media: false,
            },
            RuleText {
                selectors: ".mobile".into(),
                declarations: "display:block!important".into(),
                in_media: true,
            },
        ]);
        assert!(hides_content(Some("display:none"), None, None, false, &sheets).is_some());
        assert!(hides_content(Some("visibility:hidden"), None, None, false, &sheets).is_some());
        assert!(hides_content(None, None, None, true, &sheets).is_some());
        assert!(hides_content(None, Some("a gone"), None, false, &sheets).is_some());
        assert!(
            hides_content(Some("display:none"), Some("mobile"), None, false, &sheets).is_none()
        );
        assert!(hides_content(Some("width:0;mso-hide:all"), None, None, false, &sheets).is_none());
    }

    #[test]
    fn stylesheet_classes_hide_unless_a_media_query_shows_them() {
        let mut sheets = HiddenSelectors::default();
        sheets.learn(&[
            RuleText {
                selectors: "#_eoa_img, .px".into(),
                declarations: "display:none".into(),
                in_media: false,
            },
            RuleText {
                selectors: ".mobile-logo".into(),
                declarations: "display:block !important".into(),
                in_media: true,
            },
        ]);
        let img = |class, id| ImageAttrs {
            class,
            id,
            ..Default::default()
        };
        assert_eq!(
            invisible(&img(None, Some("_eoa_img")), &sheets),
            Some("stylesheet-hidden")
        );
        assert_eq!(
            invisible(&img(Some("x px"), None), &sheets),
            Some("stylesheet-hidden")
        );
        let logo = ImageAttrs {
            class: Some("mobile-logo"),
            style: Some("display:none;width:0;max-height:0"),
            ..Default::default()
        };
        assert_eq!(
            invisible(
                &ImageAttrs {
                    width: None,
                    ..logo
                },
                &sheets
            ),
            None
        );
    }
}
