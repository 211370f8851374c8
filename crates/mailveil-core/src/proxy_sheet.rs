//! A style sheet the proxy serves (`BASE/s/...`): every URL in it is judged as the
//! cleaner judges a mail's (a tracker by the loaded rules goes, a URL of this proxy is
//! judged by the URL it carries) and written through the proxy, so that opening the sheet
//! fetches nothing but the proxy. Pure: the proxy fetches the sheet and calls [`rewrite`];
//! [`proxied_urls`] reads back what a rewritten sheet loads, for prefetching.

use crate::detect::{Detector, remote_url};
use crate::html::css::{self, CssDecision, CssEvent};
use crate::html::{MAX_OWN_NESTING, css_url_kind};
use crate::proxy_url::{self, Own, ProxyConfig, ProxyKind};
use crate::rules::Rules;

/// A stylesheet served by the proxy: every URL in it resolved against the sheet's URL,
/// judged (a tracker by the loaded rules is removed; a URL of this proxy is judged by
/// the URL it carries, never kept as signed) and rewritten through the proxy (images
/// `/i/`, `@import` `/s/`); script in CSS and other schemes removed.
pub fn rewrite(cfg: &ProxyConfig, rules: &Rules, text: &str, base: &url::Url) -> String {
    let detector = Detector::new(rules, std::iter::empty::<&str>());
    let scan = css::scan_with(text, &mut |ev| match ev {
        CssEvent::Active { .. } => CssDecision::Remove,
        CssEvent::Url { url, property } => {
            let trimmed = url.trim();
            if trimmed.to_ascii_lowercase().starts_with("data:") || trimmed.starts_with('#') {
                return CssDecision::Keep;
            }
            let Ok(mut abs) = base.join(trimmed) else {
                return CssDecision::Remove;
            };
            for _ in 0..MAX_OWN_NESTING {
                match proxy_url::own(cfg, abs.as_str()) {
                    Own::No => break,
                    Own::Unreadable => return CssDecision::Remove,
                    Own::Carries { url, .. } => match url::Url::parse(&url) {
                        Ok(u) => abs = u,
                        Err(_) => return CssDecision::Remove,
                    },
                }
            }
            let Some(kind) = css_url_kind(property).proxy_kind() else {
                return CssDecision::Remove;
            };
            let image = kind == ProxyKind::Image;
            let tracker = remote_url(abs.as_str(), &None)
                .is_none_or(|r| detector.tracker(&r, image).is_some());
            if !matches!(abs.scheme(), "http" | "https")
                || proxy_url::own(cfg, abs.as_str()) != Own::No
                || tracker
            {
                return CssDecision::Remove;
            }
            CssDecision::Replace(proxy_url::proxied(cfg, kind, abs.as_str()))
        }
    });
    scan.apply(text).unwrap_or_else(|| text.to_string())
}

/// The proxied URLs in a sheet [`rewrite`] wrote (what opening it loads), as (kind,
/// original URL); URLs of other proxies or keys are not read.
pub fn proxied_urls(cfg: &ProxyConfig, text: &str) -> Vec<(ProxyKind, String)> {
    let mut out = Vec::new();
    css::scan_with(text, &mut |ev| {
        if let CssEvent::Url { url, .. } = ev
            && let Some(found) = proxy_url::parse(cfg, url)
        {
            out.push(found);
        }
        CssDecision::Keep
    });
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stylesheets_are_served_with_their_urls_through_the_proxy() {
        let cfg = ProxyConfig::new("http://127.0.0.1:8025", b"k".to_vec());
        let base = url::Url::parse("http://cdn.example/css/a.css").unwrap();
        let out = rewrite(
            &cfg,
            &Rules::default(),
            "@import 'b.css'; .x{background:url(../img/x.png)} .y{background:url(data:image/png;base64,AA)} .z{behavior:url(x.htc)} .w{background:url('javascript:alert(1)')}",
            &base,
        );
        assert!(out.contains(&proxy_url::proxied(
            &cfg,
            ProxyKind::Style,
            "http://cdn.example/css/b.css"
        )));
        assert!(out.contains(&proxy_url::proxied(
            &cfg,
            ProxyKind::Image,
            "http://cdn.example/img/x.png"
        )));
        assert!(out.contains("data:image/png"));
        assert!(
            !out.contains("x.htc") && !out.contains("javascript"),
            "{out}"
        );
        assert!(!out.contains("cdn.example"), "{out}");
    }

    /// Issue 14: a stylesheet could carry a URL of this proxy signed for a tracker (or a
    /// tracker of its own), and the proxy kept or signed it unjudged.
    #[test]
    fn stylesheets_lose_their_trackers_and_proxy_urls_are_judged_by_what_they_carry() {
        let cfg = ProxyConfig::new("http://127.0.0.1:8025", b"k".to_vec());
        let base = url::Url::parse("http://cdn.example/css/a.css").unwrap();
        let signed_pixel =
            proxy_url::proxied(&cfg, ProxyKind::Image, "http://t.example/open.gif?id=7");
        let signed_logo = proxy_url::proxied(&cfg, ProxyKind::Link, "http://cdn.example/logo.png");
        let sheet = format!(
            ".a{{background:url({signed_pixel})}} .b{{background:url(http://t.example/pixel.gif)}} \
             .c{{background:url({signed_logo})}} .d{{background:url(http://127.0.0.1:8025/i/x/y)}}"
        );
        let out = rewrite(&cfg, &Rules::default(), &sheet, &base);
        assert!(
            !out.contains(&signed_pixel) && !out.contains("pixel.gif"),
            "{out}"
        );
        assert!(!out.contains("/i/x/y"), "{out}");
        assert!(
            out.contains(&proxy_url::proxied(
                &cfg,
                ProxyKind::Image,
                "http://cdn.example/logo.png"
            )),
            "{out}"
        );
        assert_eq!(out.matches("url(").count(), 1, "{out}");
    }
}
