//! A structure-aware mail generator: an `arbitrary`-derived MIME tree (multipart
//! alternative/mixed/related/signed, message/rfc822 in 7bit or base64, text/html with
//! fetching vectors and trackers, text/plain with URLs, attachments) serialised to bytes
//! in 7bit/8bit/QP/base64, several charsets (true or lying), LF or CRLF.
//!
//! Every remote fetch the generator writes goes to [`TRACKER_HOST`]; links go elsewhere,
//! so under `remote-content = strip` no attribute may name that host afterwards.

use arbitrary::Arbitrary;
use base64::Engine;

/// The host of every fetching vector the generator writes.
pub const TRACKER_HOST: &str = "tracker.test";

/// Markup that makes a client fetch on open (../shared/corpus/vectors.md A and C).
pub const VECTORS: &[&str] = &[
    r#"<img src="https://tracker.test/o.gif?u=reader@example.org" width="1" height="1">"#,
    r#"<img src=https://tracker.test/a.png alt=x>"#,
    r##"<img src="#" srcset="https://tracker.test/s1.png 1x, https://tracker.test/s2.png 2x">"##,
    r#"<picture><source srcset="https://tracker.test/p.webp"><img src="https://tracker.test/p.jpg"></picture>"#,
    r#"<table background="https://tracker.test/bg.png"><tr><td>cell</td></tr></table>"#,
    r#"<p style="background-image:url('https://tracker.test/bg.gif');">bg</p>"#,
    r#"<div style="background:#fff url(https://tracker.test/u.gif) no-repeat">u</div>"#,
    r#"<p style="content:url('https://tracker.test/c.gif')"></p>"#,
    r#"<p style="behavior:url('https://tracker.test/b.htc') url('https://tracker.test/b2.htc')"></p>"#,
    r#"<style>@import 'https://tracker.test/i.css'; .a{background:url(https://tracker.test/c.png)} @font-face{src:url("https://tracker.test/f.woff")}</style>"#,
    r#"<style>@media print{#_eoa_div{background-image:url('https://tracker.test/P')}}</style>"#,
    r#"<link rel="stylesheet" type="text/css" href="https://tracker.test/s.css">"#,
    r#"<link rel="prefetch" href="https://tracker.test/pf">"#,
    r#"<link rel="dns-prefetch" href="https://tracker.test/">"#,
    r#"<video poster="https://tracker.test/poster.jpg" autoplay="true" src="https://tracker.test/v.mp4"></video>"#,
    r#"<video autoplay><source src="https://tracker.test/v.webm" type='video/webm'></video>"#,
    r#"<audio src="https://tracker.test/a.mp3" preload="metadata" autoplay="autoplay"></audio>"#,
    r#"<bgsound src="https://tracker.test/bgs" loop="1">"#,
    r#"<input type="image" src="https://tracker.test/i.png">"#,
    r#"<object data="https://tracker.test/o.jpg" type="image/jpeg"></object>"#,
    r#"<object><param name="movie" value="flash.swf"/><embed src="https://tracker.test/e.swf"></embed></object>"#,
    r#"<applet codebase="https://tracker.test/" code="applet.class"></applet>"#,
    r#"<iframe src="https://tracker.test/f.html"></iframe>"#,
    r#"<script type="text/javascript" src="https://tracker.test/j.js"></script>"#,
    r#"<meta http-equiv="Refresh" content="1; URL=https://tracker.test/r">"#,
    r#"<html manifest="https://tracker.test/m">"#,
    r#"<body background="https://tracker.test/body.png">"#,
    r#"<svg><image xlink:href="https://tracker.test/x.png"/><image href="https://tracker.test/h.png"/></svg>"#,
    r#"<!--[if mso]><v:rect><v:fill type="tile" src="https://tracker.test/vml.png"/></v:rect><![endif]-->"#,
    r#"<!--[if gte mso 9]><v:image src="https://tracker.test/vml2.png" /><![endif]-->"#,
    r#"<img src="https://tracker&#46;test/ent.gif">"#,
    r#"<img src="HTTPS://TRACKER.TEST/UPPER.GIF">"#,
    r#"<img src="//tracker.test/rel.gif">"#,
    r#"<img src=" https://tracker.test/space.gif ">"#,
    r#"<td style="background-image:url(&quot;https://tracker.test/q.png&quot;)">q</td>"#,
    r#"<noscript><img src="https://tracker.test/ns.gif"></noscript>"#,
    r#"<img style="display:none;width:1px;height:1px" src="https://tracker.test/hidden.gif">"#,
    r#"<a href="https://shop.example/x"><img height=1 width=1 src="https://tracker.test/in-link.gif"></a>"#,
];

/// Links: redirect wrappers, identifying parameters, functional links (none on the
/// tracker host: a link is not a fetch on open).
pub const LINKS: &[&str] = &[
    r#"<a href="https://www.google.com/url?q=https%3A%2F%2Fshop.example%2Fp%3Futm_source%3Dnl%26id%3D1&amp;sa=D">shop</a>"#,
    r#"<a href="https://eur01.safelinks.protection.outlook.com/?url=https%3A%2F%2Fnews.example%2Fa%3Fmc_eid%3Dabc&amp;data=x">read</a>"#,
    r#"<a href="https://shop.example/item?utm_source=news&amp;utm_medium=email&amp;id=7">item</a>"#,
    r#"<a href="https://news.example/unsubscribe?u=reader@example.org">Unsubscribe</a>"#,
    r#"<a href="https://awstrack.me/L0/https:%2F%2Fdest.example%2Fp%3Fa=1/1/abc">aws</a>"#,
    r#"<a href="https://click.example/?e=cmVhZGVyQGV4YW1wbGUub3Jn&amp;k=1">token</a>"#,
    r#"<a href="https://shop.example/?utm_source=x&amp;b=2">https://shop.example/?utm_source=x&amp;b=2</a>"#,
    r#"<a href="mailto:someone@example.org">mail</a>"#,
    r#"<a href="javascript:alert(1)">js</a>"#,
    r#"<a href=https://l.facebook.com/l.php?u=https%3A%2F%2Fwww.google.com%2Furl%3Fq%3Dhttps%253A%252F%252Fdeep.example%252F>deep</a>"#,
    r#"<v:roundrect href="https://www.google.com/url?q=https://btn.example/">btn</v:roundrect>"#,
];

/// Markup that trips parsers: strict-mode refusals, raw text elements, stray closers.
pub const HOSTILE: &[&str] = &[
    "<select><xmp>",
    "</xmp></select>",
    "<![CDATA[ x ]]>",
    "<style>",
    "</style>",
    "<script>",
    "</script>",
    "<title>",
    "<textarea>",
    "<plaintext>",
    "<noscript>",
    "</noscript>",
    "<!--",
    "-->",
    "<!--[if mso]>",
    "<![endif]-->",
    "<math><mi><mglyph><style></style></mglyph></mi></math>",
    "<svg><foreignObject><p></p></foreignObject></svg>",
    "&#0;&#x110000;&amp",
    "<img src=\"",
    "\"",
    "'",
    "<a href='https://a.example/?x=1",
    "<table><td><tr></table>",
    "<frameset><frame src=x>",
];

const TEXT_URLS: &[&str] = &[
    "https://www.google.com/url?q=https%3A%2F%2Fshop.example%2F%3Futm_source%3Dplain",
    "https://shop.example/p?utm_campaign=spring&id=3",
    "https://news.example/view?u=reader@example.org",
    "(see https://en.wikipedia.org/wiki/A_(B))",
    "<https://eur01.safelinks.protection.outlook.com/?url=https%3A%2F%2Fa.example%2F&data=1>",
    "https://news.example/unsubscribe?id=9",
    "http://",
    "HTTPS://UPPER.EXAMPLE/?MC_EID=1",
];

/// A whole mail.
#[derive(Arbitrary, Debug)]
pub struct Mail {
    /// Policy flags (see `crate::policy`).
    pub flags: u8,
    /// CRLF line endings (else LF).
    pub crlf: bool,
    /// Extra top-level headers.
    pub headers: Vec<Extra>,
    /// The body.
    pub root: Node,
}

/// Top-level headers that matter to the cleaner.
#[derive(Arbitrary, Debug)]
pub enum Extra {
    ReadReceipt,
    ListUnsubscribe,
    EightBitSubject,
    EncodedSubject,
    LongHeader(u16),
    DeliveredTo,
    Free(String),
}

/// One MIME node.
#[derive(Arbitrary, Debug)]
pub enum Node {
    Multipart {
        kind: MultiKind,
        children: Vec<Node>,
        preamble: bool,
    },
    Html {
        frags: Vec<HtmlFrag>,
        charset: Charset,
        cte: Cte,
    },
    Text {
        frags: Vec<TextFrag>,
        charset: Charset,
        cte: Cte,
    },
    Attachment {
        kind: AttachKind,
        data: Vec<u8>,
        base64: bool,
    },
    Message {
        base64: bool,
        inner: Box<Node>,
    },
}

#[derive(Arbitrary, Debug, Clone, Copy)]
pub enum MultiKind {
    Alternative,
    Mixed,
    Related,
    Signed,
}

#[derive(Arbitrary, Debug, Clone, Copy)]
pub enum Cte {
    None,
    SevenBit,
    EightBit,
    QuotedPrintable,
    Base64,
}

#[derive(Arbitrary, Debug, Clone, Copy)]
pub enum Charset {
    None,
    Utf8,
    Latin1,
    ShiftJis,
    Iso2022Jp,
    Koi8R,
    Utf16Le,
    Utf16Be,
    Unknown,
    /// Labelled UTF-8, written in windows-1252.
    Lying,
}

#[derive(Arbitrary, Debug, Clone, Copy)]
pub enum AttachKind {
    Pdf,
    Png,
    Calendar,
    /// text/html as an attachment: must stay byte for byte.
    HtmlAttachment,
    Css,
    Signature,
}

#[derive(Arbitrary, Debug)]
pub enum HtmlFrag {
    Vector(u8),
    Link(u8),
    Hostile(u8),
    Text(String),
    Open(u8),
    Close(u8),
    Newline,
}

#[derive(Arbitrary, Debug)]
pub enum TextFrag {
    Url(u8),
    Text(String),
    Newline,
}

const TAGS: &[&str] = &[
    "html", "head", "body", "table", "tr", "td", "div", "p", "span", "a", "center", "font",
];

/// Text without the characters of our boundaries (`=` and `_`), so that generated text
/// does not cut a part short by accident.
fn plain(s: &str) -> String {
    s.chars()
        .filter(|c| !matches!(c, '=' | '_' | '\r' | '\n' | '\0'))
        .take(200)
        .collect()
}

struct Writer {
    eol: &'static str,
    boundaries: usize,
}

/// A hostile shape the generated mail is given (issue 14, item 3 and 4): what mailveil
/// cannot read as it is must still leave nothing that fetches under strip.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    /// Every line end a bare CR.
    BareCr,
    /// The body under 70 levels of multipart/mixed (past the default max_depth of 64).
    Nest70,
    /// A forged `X-Mailveil` header on top.
    Forged,
    /// 70 levels, with bare CR line ends.
    Nest70BareCr,
    /// The body signed: PGP/MIME.
    SignedPgp,
    /// The body signed: S/MIME (detached).
    SignedSmime,
    /// A forged header on a PGP/MIME-signed body.
    ForgedSigned,
    /// A signed body with bare CR line ends.
    SignedBareCr,
}

impl Mail {
    /// The shape this mail is given: one input in four (flag bits 3-4 = `01`; no seed
    /// before the shapes had that pattern, so their inputs still mean what they meant),
    /// chosen by bits 5-7.
    pub fn shape(&self) -> Option<Shape> {
        if self.flags & 0x18 != 0x08 {
            return None;
        }
        Some(match self.flags >> 5 {
            0 => Shape::BareCr,
            1 => Shape::Nest70,
            2 => Shape::Forged,
            3 => Shape::Nest70BareCr,
            4 => Shape::SignedPgp,
            5 => Shape::SignedSmime,
            6 => Shape::ForgedSigned,
            _ => Shape::SignedBareCr,
        })
    }

    /// The mail as bytes, in its shape (see [`Mail::shape`]).
    pub fn to_bytes(&self) -> Vec<u8> {
        let (head, entity) = self.head_and_entity();
        let eol = if self.crlf { "\r\n" } else { "\n" };
        let Some(shape) = self.shape() else {
            return [head, entity].concat();
        };
        let nest = |entity: Vec<u8>| {
            let mut m = Vec::with_capacity(entity.len() + 70 * 64);
            for i in 0..70 {
                m.extend_from_slice(
                    format!("Content-Type: multipart/mixed; boundary=\"=_nest{i}\"{eol}{eol}--=_nest{i}{eol}")
                        .as_bytes(),
                );
            }
            m.extend_from_slice(&entity);
            for i in (0..70).rev() {
                m.extend_from_slice(format!("{eol}--=_nest{i}--{eol}").as_bytes());
            }
            m
        };
        let sign = |entity: Vec<u8>, smime: bool| {
            let (protocol, sig) = if smime {
                (
                    "application/pkcs7-signature\"; micalg=sha-256",
                    format!(
                        "Content-Type: application/pkcs7-signature; name=smime.p7s{eol}Content-Transfer-Encoding: base64{eol}{eol}MIAGCSqGSIb3DQEHAqCAMIACAQEx{eol}"
                    ),
                )
            } else {
                (
                    "application/pgp-signature\"; micalg=pgp-sha256",
                    format!(
                        "Content-Type: application/pgp-signature; name=\"signature.asc\"{eol}{eol}-----BEGIN PGP SIGNATURE-----{eol}wsF5BAABCAAj{eol}-----END PGP SIGNATURE-----{eol}"
                    ),
                )
            };
            let mut m = format!(
                "Content-Type: multipart/signed; protocol=\"{protocol};{eol} boundary=\"=_sig_b\"{eol}{eol}--=_sig_b{eol}"
            )
            .into_bytes();
            m.extend_from_slice(&entity);
            m.extend_from_slice(format!("{eol}--=_sig_b{eol}{sig}--=_sig_b--{eol}").as_bytes());
            m
        };
        let forged = |head: Vec<u8>| {
            [
                format!("X-Mailveil: v=0.1.0; pixel=0{eol}").into_bytes(),
                head,
            ]
            .concat()
        };
        let bare_cr = |m: Vec<u8>| -> Vec<u8> {
            let mut out = Vec::with_capacity(m.len());
            let mut i = 0;
            while i < m.len() {
                if m[i] == b'\r' && m.get(i + 1) == Some(&b'\n') {
                    i += 1; // the CR of a CRLF goes with its LF
                    continue;
                }
                out.push(if m[i] == b'\n' { b'\r' } else { m[i] });
                i += 1;
            }
            out
        };
        match shape {
            Shape::BareCr => bare_cr([head, entity].concat()),
            Shape::Nest70 => [head, nest(entity)].concat(),
            Shape::Forged => [forged(head), entity].concat(),
            Shape::Nest70BareCr => bare_cr([head, nest(entity)].concat()),
            Shape::SignedPgp => [head, sign(entity, false)].concat(),
            Shape::SignedSmime => [head, sign(entity, true)].concat(),
            Shape::ForgedSigned => [forged(head), sign(entity, false)].concat(),
            Shape::SignedBareCr => bare_cr([head, sign(entity, false)].concat()),
        }
    }

    /// The top header fields, and the root entity (its MIME header and body).
    fn head_and_entity(&self) -> (Vec<u8>, Vec<u8>) {
        let mut w = Writer {
            eol: if self.crlf { "\r\n" } else { "\n" },
            boundaries: 0,
        };
        let eol = w.eol;
        let mut out = Vec::new();
        let top = format!(
            "From: News <news@sender.example>{eol}To: reader@example.org{eol}Subject: fuzz{eol}Date: Sun, 29 Nov 2026 10:00:00 +0000{eol}Message-ID: <m1@sender.example>{eol}MIME-Version: 1.0{eol}"
        );
        out.extend_from_slice(top.as_bytes());
        for h in self.headers.iter().take(8) {
            match h {
                Extra::ReadReceipt => out.extend_from_slice(
                    format!("Disposition-Notification-To: <dn@sender.example>{eol}").as_bytes(),
                ),
                Extra::ListUnsubscribe => out.extend_from_slice(
                    format!("List-Unsubscribe: <https://news.example/unsubscribe?u=reader@example.org>, <mailto:u@sender.example>{eol}").as_bytes(),
                ),
                Extra::EightBitSubject => {
                    out.extend_from_slice(b"X-Subject-8bit: caf\xe9 \xff\xfe ");
                    out.extend_from_slice("grüße".as_bytes());
                    out.extend_from_slice(eol.as_bytes());
                }
                Extra::EncodedSubject => out.extend_from_slice(
                    format!("X-Encoded: =?utf-8?B?w6nDqcOp?= =?iso-8859-1?Q?caf=E9?={eol}")
                        .as_bytes(),
                ),
                Extra::LongHeader(n) => {
                    out.extend_from_slice(b"X-Long: ");
                    out.extend(std::iter::repeat_n(b'a', usize::from(*n) % 5000));
                    out.extend_from_slice(eol.as_bytes());
                }
                Extra::DeliveredTo => out.extend_from_slice(
                    format!("Delivered-To: other.reader@example.net{eol}").as_bytes(),
                ),
                Extra::Free(s) => out.extend_from_slice(
                    format!("X-Free: {}{eol}", plain(s)).as_bytes(),
                ),
            }
        }
        let mut entity = Vec::new();
        w.node(&self.root, &mut entity, 0);
        (out, entity)
    }
}

impl Writer {
    fn node(&mut self, node: &Node, out: &mut Vec<u8>, depth: usize) {
        let eol = self.eol;
        // Deep trees are cut to a leaf: depth is the hostile suite's job.
        let node = if depth > 10 {
            &Node::Text {
                frags: Vec::new(),
                charset: Charset::None,
                cte: Cte::None,
            }
        } else {
            node
        };
        match node {
            Node::Multipart {
                kind,
                children,
                preamble,
            } => {
                self.boundaries += 1;
                let b = format!("=_mv{}_b", self.boundaries);
                let ct = match kind {
                    MultiKind::Alternative => "multipart/alternative".to_string(),
                    MultiKind::Mixed => "multipart/mixed".to_string(),
                    MultiKind::Related => "multipart/related; type=\"text/html\"".to_string(),
                    MultiKind::Signed => "multipart/signed; protocol=\"application/pgp-signature\"; micalg=pgp-sha256".to_string(),
                };
                out.extend_from_slice(
                    format!("Content-Type: {ct};{eol} boundary=\"{b}\"{eol}{eol}").as_bytes(),
                );
                if *preamble {
                    out.extend_from_slice(
                        format!("This is a multi-part message in MIME format.{eol}").as_bytes(),
                    );
                }
                for child in children.iter().take(8) {
                    out.extend_from_slice(format!("{eol}--{b}{eol}").as_bytes());
                    self.node(child, out, depth + 1);
                }
                out.extend_from_slice(format!("{eol}--{b}--{eol}").as_bytes());
            }
            Node::Html {
                frags,
                charset,
                cte,
            } => {
                let mut html = String::new();
                for f in frags.iter().take(64) {
                    match f {
                        HtmlFrag::Vector(i) => html.push_str(VECTORS[*i as usize % VECTORS.len()]),
                        HtmlFrag::Link(i) => html.push_str(LINKS[*i as usize % LINKS.len()]),
                        HtmlFrag::Hostile(i) => html.push_str(HOSTILE[*i as usize % HOSTILE.len()]),
                        HtmlFrag::Text(s) => html.push_str(&plain(s)),
                        HtmlFrag::Open(i) => {
                            html.push('<');
                            html.push_str(TAGS[*i as usize % TAGS.len()]);
                            html.push('>');
                        }
                        HtmlFrag::Close(i) => {
                            html.push_str("</");
                            html.push_str(TAGS[*i as usize % TAGS.len()]);
                            html.push('>');
                        }
                        HtmlFrag::Newline => html.push_str(eol),
                    }
                }
                self.leaf("text/html", &html, *charset, *cte, out);
            }
            Node::Text {
                frags,
                charset,
                cte,
            } => {
                let mut text = String::new();
                for f in frags.iter().take(64) {
                    match f {
                        TextFrag::Url(i) => {
                            text.push(' ');
                            text.push_str(TEXT_URLS[*i as usize % TEXT_URLS.len()]);
                            text.push(' ');
                        }
                        TextFrag::Text(s) => text.push_str(&plain(s)),
                        TextFrag::Newline => text.push_str(eol),
                    }
                }
                self.leaf("text/plain", &text, *charset, *cte, out);
            }
            Node::Attachment { kind, data, base64 } => {
                let (ct, name) = match kind {
                    AttachKind::Pdf => ("application/pdf", "a.pdf"),
                    AttachKind::Png => ("image/png", "a.png"),
                    AttachKind::Calendar => ("text/calendar; method=REQUEST", "invite.ics"),
                    AttachKind::HtmlAttachment => ("text/html; charset=utf-8", "page.html"),
                    AttachKind::Css => ("text/css", "s.css"),
                    AttachKind::Signature => ("application/pgp-signature", "signature.asc"),
                };
                out.extend_from_slice(
                    format!("Content-Type: {ct}; name=\"{name}\"{eol}Content-Disposition: attachment; filename=\"{name}\"{eol}").as_bytes(),
                );
                let mut data = data.clone();
                if matches!(kind, AttachKind::HtmlAttachment | AttachKind::Css) {
                    data.extend_from_slice(VECTORS[data.len() % VECTORS.len()].as_bytes());
                }
                if *base64 {
                    out.extend_from_slice(
                        format!("Content-Transfer-Encoding: base64{eol}{eol}").as_bytes(),
                    );
                    out.extend_from_slice(&base64_lines(&data, eol));
                } else {
                    out.extend_from_slice(eol.as_bytes());
                    out.extend_from_slice(&data);
                }
            }
            Node::Message { base64, inner } => {
                let mut msg = format!(
                    "From: inner@sender.example{eol}To: reader@example.org{eol}Subject: forwarded{eol}MIME-Version: 1.0{eol}"
                )
                .into_bytes();
                self.node(inner, &mut msg, depth + 1);
                out.extend_from_slice(b"Content-Type: message/rfc822");
                out.extend_from_slice(eol.as_bytes());
                if *base64 {
                    out.extend_from_slice(
                        format!("Content-Transfer-Encoding: base64{eol}{eol}").as_bytes(),
                    );
                    out.extend_from_slice(&base64_lines(&msg, eol));
                } else {
                    out.extend_from_slice(eol.as_bytes());
                    out.extend_from_slice(&msg);
                }
            }
        }
    }

    fn leaf(&self, ctype: &str, text: &str, charset: Charset, cte: Cte, out: &mut Vec<u8>) {
        let eol = self.eol;
        let (label, bytes) = encode_charset(text, charset);
        // UTF-16 cannot travel in 7bit or QP without breaking lines apart.
        let cte = match charset {
            Charset::Utf16Le | Charset::Utf16Be => Cte::Base64,
            _ => cte,
        };
        out.extend_from_slice(b"Content-Type: ");
        out.extend_from_slice(ctype.as_bytes());
        if let Some(l) = label {
            out.extend_from_slice(format!("; charset=\"{l}\"").as_bytes());
        }
        out.extend_from_slice(eol.as_bytes());
        let name = match cte {
            Cte::None => None,
            Cte::SevenBit => Some("7bit"),
            Cte::EightBit => Some("8bit"),
            Cte::QuotedPrintable => Some("quoted-printable"),
            Cte::Base64 => Some("base64"),
        };
        if let Some(n) = name {
            out.extend_from_slice(format!("Content-Transfer-Encoding: {n}{eol}").as_bytes());
        }
        out.extend_from_slice(eol.as_bytes());
        match cte {
            Cte::Base64 => out.extend_from_slice(&base64_lines(&bytes, eol)),
            Cte::QuotedPrintable => out.extend_from_slice(&qp(&bytes, eol)),
            _ => out.extend_from_slice(&bytes),
        }
    }
}

/// The label and the bytes of `text` in a charset.
pub fn encode_charset(text: &str, charset: Charset) -> (Option<&'static str>, Vec<u8>) {
    use encoding_rs::{ISO_2022_JP, KOI8_R, SHIFT_JIS, WINDOWS_1252};
    match charset {
        Charset::None => (None, text.as_bytes().to_vec()),
        Charset::Utf8 => (Some("utf-8"), text.as_bytes().to_vec()),
        Charset::Latin1 => (Some("iso-8859-1"), WINDOWS_1252.encode(text).0.into_owned()),
        Charset::ShiftJis => (Some("shift_jis"), SHIFT_JIS.encode(text).0.into_owned()),
        Charset::Iso2022Jp => (Some("iso-2022-jp"), ISO_2022_JP.encode(text).0.into_owned()),
        Charset::Koi8R => (Some("koi8-r"), KOI8_R.encode(text).0.into_owned()),
        Charset::Utf16Le => (
            Some("utf-16le"),
            text.encode_utf16().flat_map(u16::to_le_bytes).collect(),
        ),
        Charset::Utf16Be => (
            Some("utf-16be"),
            text.encode_utf16().flat_map(u16::to_be_bytes).collect(),
        ),
        Charset::Unknown => (Some("x-no-such-charset"), text.as_bytes().to_vec()),
        Charset::Lying => (Some("utf-8"), WINDOWS_1252.encode(text).0.into_owned()),
    }
}

/// Base64 in 76-character lines, each ended by `eol`.
pub fn base64_lines(data: &[u8], eol: &str) -> Vec<u8> {
    let enc = base64::engine::general_purpose::STANDARD.encode(data);
    let mut out = Vec::with_capacity(enc.len() + enc.len() / 38 + 2);
    for line in enc.as_bytes().chunks(76) {
        out.extend_from_slice(line);
        out.extend_from_slice(eol.as_bytes());
    }
    out
}

/// Quoted-printable: line breaks of the content stay hard breaks, long lines get soft
/// breaks.
pub fn qp(data: &[u8], eol: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len() * 3 / 2);
    let mut col = 0;
    let mut i = 0;
    while i < data.len() {
        let b = data[i];
        if b == b'\n' || (b == b'\r' && data.get(i + 1) == Some(&b'\n')) {
            out.extend_from_slice(eol.as_bytes());
            col = 0;
            i += if b == b'\r' { 2 } else { 1 };
            continue;
        }
        let at_end = matches!(data.get(i + 1), None | Some(b'\r' | b'\n'));
        let literal = (33..=126).contains(&b) && b != b'=' || (b == b' ' || b == b'\t') && !at_end;
        let width = if literal { 1 } else { 3 };
        if col + width > 75 {
            out.push(b'=');
            out.extend_from_slice(eol.as_bytes());
            col = 0;
        }
        if literal {
            out.push(b);
        } else {
            out.extend_from_slice(format!("={b:02X}").as_bytes());
        }
        col += width;
        i += 1;
    }
    out
}
