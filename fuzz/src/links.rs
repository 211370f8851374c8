//! Wrapped links: a destination put inside redirect wrappers of the shapes the shipped
//! rules recover (plain percent-encoded parameters, path segments, base64, base64 JSON,
//! Mailgun's zlib tokens), nested, plus raw strings.

use arbitrary::Arbitrary;
use base64::Engine;
use base64::engine::general_purpose::{STANDARD_NO_PAD, URL_SAFE_NO_PAD};
use std::io::Write;

/// One fuzzed link.
#[derive(Arbitrary, Debug)]
pub struct Link {
    /// The innermost URL (or any string).
    pub dest: Dest,
    /// Wrappers, innermost first.
    pub wrappers: Vec<Wrapper>,
    /// The anchor text.
    pub text: Option<String>,
    /// Keep campaign parameters.
    pub keep_campaign: bool,
    /// How deep the policy unwraps.
    pub max_depth: u8,
}

/// The innermost destination.
#[derive(Arbitrary, Debug)]
pub enum Dest {
    /// Any string.
    Raw(String),
    /// `https://<host>/<path>?<query>` from pieces.
    Built {
        host: u8,
        path: String,
        query: Vec<(String, String)>,
        fragment: Option<String>,
    },
}

/// A redirect shape.
#[derive(Arbitrary, Debug, Clone, Copy)]
pub enum Wrapper {
    Google,
    SafeLinks,
    Facebook,
    Aws,
    Mailgun,
    MailgunBomb(u8),
    Mailjet,
    Drip,
    Mandrill,
    ConvertKit,
    ActiveCampaign,
    Raw(u8),
}

const HOSTS: &[&str] = &[
    "shop.example",
    "news.example",
    "email.mg.example",
    "www.google.com",
    "click.example",
    "xn--bcher-kva.example",
    "[::1]",
    "127.0.0.1:8080",
    "user:pw@auth.example",
    "",
];

const PARAMS: &[&str] = &[
    "utm_source",
    "utm_campaign",
    "mc_eid",
    "_hsenc",
    "id",
    "u",
    "e",
    "q",
    "url",
    "reader@example.org",
];

fn pct(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn zlib(data: &[u8]) -> Vec<u8> {
    let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
    let _ = z.write_all(data);
    z.finish().unwrap_or_default()
}

impl Link {
    /// The link URL.
    pub fn url(&self) -> String {
        let mut url = match &self.dest {
            Dest::Raw(s) => s.chars().take(2000).collect(),
            Dest::Built {
                host,
                path,
                query,
                fragment,
            } => {
                let mut u = format!(
                    "https://{}/{}",
                    HOSTS[*host as usize % HOSTS.len()],
                    path.chars().take(100).collect::<String>()
                );
                for (i, (k, v)) in query.iter().take(8).enumerate() {
                    u.push(if i == 0 { '?' } else { '&' });
                    let k = PARAMS
                        .iter()
                        .find(|p| p.len() == k.len())
                        .map_or_else(|| k.clone(), |p| p.to_string());
                    u.push_str(&k);
                    u.push('=');
                    u.push_str(&v.chars().take(60).collect::<String>());
                }
                if let Some(f) = fragment {
                    u.push('#');
                    u.push_str(f);
                }
                u
            }
        };
        for w in self.wrappers.iter().take(8) {
            url = wrap(&url, *w);
        }
        url
    }
}

/// `url` inside one redirect of shape `w`.
pub fn wrap(url: &str, w: Wrapper) -> String {
    match w {
        Wrapper::Google => format!("https://www.google.com/url?q={}&sa=D", pct(url)),
        Wrapper::SafeLinks => format!(
            "https://eur01.safelinks.protection.outlook.com/?url={}&data=05%7C01&reserved=0",
            pct(url)
        ),
        Wrapper::Facebook => format!("https://l.facebook.com/l.php?u={}&h=AT0", pct(url)),
        Wrapper::Aws => format!("https://awstrack.me/L0/{}/1/0100abc=/xyz=123", pct(url)),
        Wrapper::Mailgun => {
            let q = format!("l={}&r=reader%40example.org&h=abc", pct(url));
            format!(
                "https://email.mg.example/c/{}",
                URL_SAFE_NO_PAD.encode(zlib(q.as_bytes()))
            )
        }
        Wrapper::MailgunBomb(n) => {
            // A token that inflates far beyond any link (64 KiB to 1 MiB of zeros after
            // the destination): still a small token, so the inflate cap is what stops it.
            let mut q = format!("l={}&r=", pct(url)).into_bytes();
            q.extend(std::iter::repeat_n(b'0', (usize::from(n % 16) + 1) << 16));
            format!(
                "https://email.mg.example/c/{}",
                URL_SAFE_NO_PAD.encode(zlib(&q))
            )
        }
        Wrapper::Mailjet => format!(
            "https://xyz.mjt.lu/lnk/AAAA/{}",
            URL_SAFE_NO_PAD.encode(url.as_bytes())
        ),
        Wrapper::Drip => format!(
            "https://dripemail2.com/c/{}",
            URL_SAFE_NO_PAD.encode(format!("{{\"url\":{:?}}}", url).as_bytes())
        ),
        Wrapper::Mandrill => {
            let inner = format!("{{\"url\":{:?},\"id\":\"x\"}}", url);
            let outer = format!("{{\"p\":{:?}}}", inner);
            format!(
                "https://mandrillapp.com/track/click/30/m.example?p={}",
                URL_SAFE_NO_PAD.encode(outer.as_bytes())
            )
        }
        Wrapper::ConvertKit => format!(
            "https://click.convertkit-mail2.com/abc/{}",
            STANDARD_NO_PAD.encode(url.as_bytes())
        ),
        Wrapper::ActiveCampaign => format!(
            "https://x.lt.acemlnb.com/Prod/link-tracker?redirectUrl={}&sig=1",
            pct(&STANDARD_NO_PAD.encode(url.as_bytes()))
        ),
        Wrapper::Raw(n) => format!(
            "{url}{}",
            ["&", "%", "#", "?", "/", "%25", " "][n as usize % 7]
        ),
    }
}
