//! The hostile-mail generator: mails built to make a filter crash, hang or blow up its
//! memory (issue 8). Each case is the project's own construction; sizes scale with
//! [`Scale`] so that the default `cargo test` stays quick and the release run takes the
//! full sizes (100 MB line, 50 MB base64 part, a million attributes).

use base64::Engine;
use std::io::Write;

/// How big the big cases are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scale {
    /// The sizes the issue names (100 MB, 50 MB, 1M attributes, 100k tags).
    Full,
    /// A tenth of the sizes and counts (at least enough to cross each limit): the same
    /// code paths in a debug build in seconds.
    Reduced,
}

/// Which resource bound a case is held to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Size {
    /// A mail of tens of MB or more.
    Big,
    /// Everything else (at most a few MB).
    Small,
}

/// One hostile mail.
pub struct Case {
    pub name: &'static str,
    pub mail: Vec<u8>,
    pub size: Size,
}

const TRACKER: &str = "https://tracker.test/o.gif?u=reader@example.org";

fn head(ctype: &str, eol: &str) -> String {
    format!(
        "From: Hostile <h@sender.example>{eol}To: reader@example.org{eol}Subject: hostile{eol}MIME-Version: 1.0{eol}Content-Type: {ctype}{eol}"
    )
}

fn html_mail(body: &[u8]) -> Vec<u8> {
    let mut m = head("text/html; charset=utf-8", "\r\n").into_bytes();
    m.extend_from_slice(b"\r\n");
    m.extend_from_slice(body);
    m.extend_from_slice(b"\r\n");
    m
}

fn b64_lines(data: &[u8]) -> Vec<u8> {
    let enc = base64::engine::general_purpose::STANDARD.encode(data);
    let mut out = Vec::with_capacity(enc.len() + enc.len() / 38 + 2);
    for line in enc.as_bytes().chunks(76) {
        out.extend_from_slice(line);
        out.extend_from_slice(b"\r\n");
    }
    out
}

fn pct(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

fn scaled(scale: Scale, full: usize) -> usize {
    match scale {
        Scale::Full => full,
        Scale::Reduced => full / 10,
    }
}

/// Every case, handed to `sink` one at a time as it is built, small ones first: the
/// caller runs each before the next is built, so that the test process never holds more
/// than one mail (a child's peak RSS starts from its parent's, see tests/hostile.rs).
pub fn cases(scale: Scale, sink: &mut dyn FnMut(Case)) {
    let mut add = |name, mail, size| sink(Case { name, mail, size });

    // 10,000-deep multipart nesting (each level its own boundary).
    let depth = 10_000;
    let mut m = head("multipart/mixed; boundary=\"b0\"", "\r\n").into_bytes();
    m.extend_from_slice(b"\r\n");
    for i in 0..depth {
        write!(
            m,
            "--b{i}\r\nContent-Type: multipart/mixed; boundary=\"b{}\"\r\n\r\n",
            i + 1
        )
        .unwrap();
    }
    write!(
        m,
        "--b{depth}\r\nContent-Type: text/html\r\n\r\n<img src=\"{TRACKER}\">\r\n--b{depth}--\r\n"
    )
    .unwrap();
    for i in (0..depth).rev() {
        write!(m, "--b{i}--\r\n").unwrap();
    }
    add("multipart-nesting-10k", m, Size::Small);

    // Multiparts whose delimiter never comes, one after another: each is searched for
    // to the end of the mail, and the reading is quadratic (a 1.2 MB mail of 20,000 took
    // 21 s in a release build with mail-parser's reading, 89 s in a debug build with the
    // scan before it asked the deadline). The tracker comes last, after them all. The
    // same inside a message part (read in line) and after one (20.5 s for 1.2 MB when a
    // mail holding a message took mail-parser's reading unbounded), with a bare CR, whose
    // two readings are compared (67 s), and with the marker of our own wrapper, which is
    // read to see if it is one (24 s).
    let n = scaled(scale, 200_000);
    let never_delimited = |field: &str, first: &str| {
        let mut m = head("multipart/mixed; boundary=\"o\"", "\r\n").into_bytes();
        write!(m, "{field}\r\n{first}").unwrap();
        for i in 0..n {
            write!(
                m,
                "--o\r\nContent-Type: multipart/mixed; boundary=\"never{i}\"\r\n\r\nx\r\n"
            )
            .unwrap();
        }
        write!(
            m,
            "--o\r\nContent-Type: text/html\r\n\r\n<img src=\"{TRACKER}\">\r\n--o--\r\n"
        )
        .unwrap();
        m
    };
    // (Each built as it is handed on: one mail held at a time.)
    for (name, field, first) in [
        ("multiparts-never-delimited", "", ""),
        (
            "multiparts-never-delimited-in-a-message",
            "",
            "--o\r\nContent-Type: message/rfc822\r\n\r\nSubject: in\r\nContent-Type: multipart/mixed; boundary=\"o\"\r\n\r\n",
        ),
        (
            "multiparts-never-delimited-after-a-message",
            "",
            "--o\r\nContent-Type: message/rfc822\r\n\r\nSubject: fwd\r\n\r\nhi\r\n",
        ),
        ("multiparts-never-delimited-bare-cr", "X-Cr: a\rb\r\n", ""),
        (
            "multiparts-never-delimited-wrapper-marker",
            "",
            "X-Mailveil-Original: error=too-large\r\n",
        ),
    ] {
        add(name, never_delimited(field, first), Size::Small);
    }

    // Invalid base64 and QP.
    let mut m = head("text/html", "\r\n").into_bytes();
    write!(m, "Content-Transfer-Encoding: base64\r\n\r\nPGltZyBzcmM9Imh0dHBzOi8v!!!@@@###\r\n====\r\nx\r\n\u{e9}\u{e9}\r\nPGEgaHJlZj0=ZZ\r\nA").unwrap();
    add("invalid-base64", m, Size::Small);
    let mut m = head("text/html", "\r\n").into_bytes();
    write!(m, "Content-Transfer-Encoding: quoted-printable\r\n\r\n<img src=3D\"https://tracker.te=\r\nst/o.gif\"> =ZZ =4 =\r\n=\r\n{}=0\r\n<a href=3D\"https://a.example/?utm_source=3Dx\">a</a>=", "x".repeat(5000)).unwrap();
    add("invalid-qp", m, Size::Small);

    // NUL bytes in headers and body.
    let mut m = b"From: a\0b@sender.example\r\nTo: reader@example.org\r\nSubject: n\0ul\r\nContent-Type: text/html\r\n\r\n".to_vec();
    write!(m, "<p>\0\0<img src=\"{TRACKER}\0\">\0<a href=\"https://a.example/\0?utm_source=x\">x</a>\0\r\n").unwrap();
    add("nul-bytes", m, Size::Small);

    // Bare CR, bare LF, mixed line endings.
    let base = format!(
        "From: h@sender.example\nTo: reader@example.org\nSubject: eol\nContent-Type: multipart/alternative; boundary=\"e\"\n\n--e\nContent-Type: text/plain\n\nhttps://a.example/?utm_source=x\n--e\nContent-Type: text/html\n\n<img src=\"{TRACKER}\">\n--e--\n"
    );
    add(
        "bare-cr",
        base.replace('\n', "\r").into_bytes(),
        Size::Small,
    );
    add("bare-lf", base.clone().into_bytes(), Size::Small);
    let mixed: String = base
        .split('\n')
        .enumerate()
        .map(|(i, l)| format!("{l}{}", ["\r\n", "\n", "\r", "\n\r"][i % 4]))
        .collect();
    add("mixed-eol", mixed.into_bytes(), Size::Small);

    // Issue 14: what mailveil cannot read fails closed. A 70-level nest (past the
    // default max_depth of 64) with the tracker in the deepest HTML, the same under a
    // forged X-Mailveil header, and a nested message that mail-parser reads past its
    // parent's boundary (ambiguous).
    let nest70 = |forged: bool| {
        let mut m = Vec::new();
        if forged {
            m.extend_from_slice(b"X-Mailveil: v=0.1.0; pixel=0\r\n");
        }
        m.extend_from_slice(head("multipart/mixed; boundary=\"d0\"", "\r\n").as_bytes());
        m.extend_from_slice(b"\r\n");
        for i in 0..70 {
            write!(
                m,
                "--d{i}\r\nContent-Type: multipart/mixed; boundary=\"d{}\"\r\n\r\n",
                i + 1
            )
            .unwrap();
        }
        write!(
            m,
            "--d70\r\nContent-Type: text/html\r\n\r\n<p>deep</p><img src=\"{TRACKER}\">\r\n--d70--\r\n"
        )
        .unwrap();
        for i in (0..70).rev() {
            write!(m, "--d{i}--\r\n").unwrap();
        }
        m
    };
    add("multipart-nesting-70", nest70(false), Size::Small);
    add("forged-header-nesting-70", nest70(true), Size::Small);
    let mut m = head("multipart/mixed; boundary=\"b\"", "\r\n").into_bytes();
    write!(
        m,
        "\r\n--b\r\nContent-Type: message/rfc822\r\n\r\nFrom: i@sender.example\r\nContent-Type: message/rfc822\r\n\r\n\
         From: j@sender.example\r\nContent-Type: text/html\r\n\r\n<!--[if mso]><!--[if mso]><img src=\"{TRACKER}\">\r\n\r\n\
         --b\r\nContent-Type: text/html\r\n\r\n<img src=\"{TRACKER}\">\r\n--b--\r\n"
    )
    .unwrap();
    add("ambiguous-nested-message", m, Size::Small);
    add("empty", Vec::new(), Size::Small);
    // A PGP/MIME-signed newsletter: cleaned under strip, the original attached.
    add(
        "signed-pgp-newsletter",
        include_bytes!("../fixtures/signed/pgp-newsletter.eml").to_vec(),
        Size::Small,
    );

    // Missing and duplicate boundaries, boundary inside the body.
    let mut m = head("multipart/mixed", "\r\n").into_bytes();
    write!(
        m,
        "\r\n--x\r\nContent-Type: text/html\r\n\r\n<img src=\"{TRACKER}\">\r\n--x--\r\n"
    )
    .unwrap();
    add("boundary-parameter-missing", m, Size::Small);
    let mut m = head("multipart/mixed; boundary=\"m\"", "\r\n").into_bytes();
    write!(
        m,
        "\r\n--m\r\nContent-Type: text/html\r\n\r\n<img src=\"{TRACKER}\">\r\n"
    )
    .unwrap();
    add("closing-boundary-missing", m, Size::Small);
    let mut m = head("multipart/mixed; boundary=\"d\"", "\r\n").into_bytes();
    write!(m, "\r\n--d\r\nContent-Type: multipart/alternative; boundary=\"d\"\r\n\r\n--d\r\nContent-Type: text/html\r\n\r\n<img src=\"{TRACKER}\">\r\n--d\r\n--d\r\nContent-Type: text/plain\r\n\r\nhttps://a.example/?utm_source=x\r\n--d--\r\n--d--\r\n--d--\r\n").unwrap();
    add("boundary-duplicate", m, Size::Small);
    let mut m = head("multipart/mixed; boundary=\"in\"", "\r\n").into_bytes();
    write!(m, "\r\n--in\r\nContent-Type: text/html\r\n\r\n<p>--in</p><img src=\"{TRACKER}\">--in-- text --inner\r\n--in\r\nContent-Type: text/plain\r\n\r\nsee --in and https://a.example/?utm_source=x\r\n--in--\r\n").unwrap();
    add("boundary-inside-body", m, Size::Small);

    // 8-bit and overlong headers.
    let mut m = b"From: \xc3\xa9\xff\xfe <h@sender.example>\r\nTo: r\xe9ader@example.org\r\nSubject: \xff\xfe\x80 caf\xe9\r\nX-\xe9\xe9: v\r\n".to_vec();
    write!(
        m,
        "Content-Type: text/html\r\n\r\n<img src=\"{TRACKER}\">\r\n"
    )
    .unwrap();
    add("headers-8bit", m, Size::Small);
    let mut m = b"From: h@sender.example\r\nTo: reader@example.org\r\nX-Long: ".to_vec();
    m.resize(m.len() + (1 << 20), b'h');
    m.extend_from_slice(b"\r\nX-Folded: a");
    for _ in 0..100_000 {
        m.extend_from_slice(b"\r\n b");
    }
    m.extend_from_slice(b"\r\n");
    for i in 0..20_000 {
        write!(m, "X-Many-{i}: v\r\n").unwrap();
    }
    write!(
        m,
        "Content-Type: text/html\r\n\r\n<img src=\"{TRACKER}\">\r\n"
    )
    .unwrap();
    add("headers-overlong", m, Size::Small);

    // Unknown and lying charsets.
    let mut m = head("text/html; charset=x-no-such-charset", "\r\n").into_bytes();
    write!(m, "\r\n<p>caf\u{e9}</p>").unwrap();
    m.extend_from_slice(b"\xe9\xff<img src=\"https://tracker.test/o.gif\">\r\n");
    add("charset-unknown", m, Size::Small);
    let mut m = head("multipart/alternative; boundary=\"l\"", "\r\n").into_bytes();
    m.extend_from_slice(b"\r\n--l\r\nContent-Type: text/html; charset=utf-8\r\n\r\n<p>\xe9\xc3\x28\xf0\x28\x8c\x28</p><img src=\"https://tracker.test/o.gif\">\r\n--l\r\nContent-Type: text/html; charset=us-ascii\r\nContent-Transfer-Encoding: 8bit\r\n\r\n\xff\xfe<img src=\"https://tracker.test/o.gif\">\r\n--l\r\nContent-Type: text/html; charset=utf-16\r\n\r\n<img src=\"https://tracker.test/odd.gif\">x\r\n--l\r\nContent-Type: text/plain; charset=iso-2022-jp\r\n\r\n\x1b$B\xff\xff https://a.example/?utm_source=x\r\n--l--\r\n");
    add("charset-lying", m, Size::Small);

    // UTF-16 HTML (with a BOM, base64 as senders send it).
    let html = format!(
        "\u{feff}<html><body><p>\u{65e5}\u{672c}</p><img src=\"{TRACKER}\"><a href=\"https://a.example/?utm_source=x\">a</a></body></html>"
    );
    let bytes: Vec<u8> = html.encode_utf16().flat_map(u16::to_le_bytes).collect();
    let mut m = head("text/html; charset=\"utf-16le\"", "\r\n").into_bytes();
    m.extend_from_slice(b"Content-Transfer-Encoding: base64\r\n\r\n");
    m.extend_from_slice(&b64_lines(&bytes));
    add("utf16-html", m, Size::Small);

    // lol_html's strict-mode refusal.
    let body = format!(
        "<p>before</p><select><xmp><img src=\"{TRACKER}\"></xmp></select><img src=\"{TRACKER}\">"
    );
    add("select-xmp", html_mail(body.as_bytes()), Size::Small);

    // 100k nested tags.
    let n = scaled(scale, 100_000);
    let mut body = Vec::new();
    for _ in 0..n {
        body.extend_from_slice(b"<div>");
    }
    write!(body, "<img src=\"{TRACKER}\">").unwrap();
    for _ in 0..n {
        body.extend_from_slice(b"</div>");
    }
    add("nested-tags-100k", html_mail(&body), Size::Small);

    // Zip-bomb-like Mailgun tokens: 16 MB of zeros after the destination, which deflate
    // packs into a token under the 32 KB carrier limit; 200 links carry it.
    let mut q = format!(
        "l={}&r=reader%40example.org&h=",
        pct("https://dest.example/bomb")
    )
    .into_bytes();
    q.resize(q.len() + (16 << 20), b'0');
    let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
    z.write_all(&q).unwrap();
    let token = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(z.finish().unwrap());
    assert!(
        token.starts_with("eJ") && token.len() < 32 * 1024,
        "{}",
        token.len()
    );
    let mut body = Vec::new();
    for i in 0..scaled(scale, 200) {
        writeln!(
            body,
            "<a href=\"https://email.mg.example/c/{token}\">link {i}</a>"
        )
        .unwrap();
    }
    add("mailgun-zlib-bombs", html_mail(&body), Size::Small);

    // Recursive redirect wrappers: Google in SafeLinks in Google ... 12 deep, and a
    // Mailgun token that carries a Mailgun link that carries ..., 2,000 links.
    let mut body = Vec::new();
    for i in 0..scaled(scale, 2000) {
        let mut url = format!("https://dest.example/{i}?utm_source=x");
        for level in 0..12 {
            url = if level % 2 == 0 {
                format!("https://www.google.com/url?q={}", pct(&url))
            } else {
                format!(
                    "https://eur01.safelinks.protection.outlook.com/?url={}&data=1",
                    pct(&url)
                )
            };
            if url.len() > 20_000 {
                break;
            }
        }
        writeln!(body, "<a href=\"{url}\">w{i}</a>").unwrap();
    }
    let mut url = "https://dest.example/mg".to_string();
    for _ in 0..30 {
        let q = format!("l={}&r=reader%40example.org", pct(&url));
        let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
        z.write_all(q.as_bytes()).unwrap();
        url = format!(
            "https://email.mg.example/c/{}",
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(z.finish().unwrap())
        );
    }
    writeln!(body, "<a href=\"{url}\">mg</a>").unwrap();
    add("redirects-recursive", html_mail(&body), Size::Small);

    // Many parts and many links (the part and findings limits).
    let mut m = head("multipart/mixed; boundary=\"p\"", "\r\n").into_bytes();
    m.extend_from_slice(b"\r\n");
    for _ in 0..scaled(scale, 20_000).max(6000) {
        write!(
            m,
            "--p\r\nContent-Type: text/html\r\n\r\n<img src=\"{TRACKER}\">\r\n"
        )
        .unwrap();
    }
    m.extend_from_slice(b"--p--\r\n");
    add("parts-20k", m, Size::Small);
    let mut body = Vec::new();
    for i in 0..scaled(scale, 100_000) {
        writeln!(body, "<img src=\"https://t{i}.tracker.test/o.gif\"><a href=\"https://a.example/{i}?utm_source=x\">l</a>").unwrap();
    }
    add("findings-200k", html_mail(&body), Size::Small);

    // The big ones last (see `cases`).
    // A text/plain part of nothing but links to clean (a million at full size).
    let n = match scale {
        Scale::Full => 1_000_000,
        Scale::Reduced => 20_000, // a debug build would spend its whole budget on it
    };
    let mut m = head("text/plain; charset=utf-8", "\r\n").into_bytes();
    m.extend_from_slice(b"\r\n");
    for i in 0..n {
        write!(
            m,
            "https://www.google.com/url?q=https%3A%2F%2Fa.example%2F{i}%3Futm_source%3Dx\r\n"
        )
        .unwrap();
    }
    add("text-links-1m", m, Size::Big);
    // A million attributes on one tag.
    let n = scaled(scale, 1_000_000);
    let mut body = b"<img".to_vec();
    for i in 0..n {
        write!(body, " a{i}=x").unwrap();
    }
    write!(body, " src=\"{TRACKER}\">").unwrap();
    add("attributes-1m", html_mail(&body), Size::Big);

    // Huge CSS: one <style> of many rules, each with a remote URL.
    let n = scaled(scale, 20 << 20);
    let mut css = b"<style>".to_vec();
    let mut i = 0;
    while css.len() < n {
        writeln!(css, ".c{i}{{background:url(https://cdn.example/i{i}.png)}}").unwrap();
        i += 1;
    }
    css.extend_from_slice(b"</style><p>x</p>");
    add("css-huge", html_mail(&css), Size::Big);

    // A 50 MB base64 text/html part, and a 50 MB base64 attachment next to a small HTML.
    let n = scaled(scale, 50 << 20) / 4 * 3;
    let mut html = format!("<p><img src=\"{TRACKER}\"></p>").into_bytes();
    html.resize(n, b' ');
    let mut m = head("text/html; charset=utf-8", "\r\n").into_bytes();
    m.extend_from_slice(b"Content-Transfer-Encoding: base64\r\n\r\n");
    m.extend_from_slice(&b64_lines(&html));
    add("base64-html-50mb", m, Size::Big);
    let data: Vec<u8> = (0..n).map(|i| (i * 7 % 251) as u8).collect();
    let mut m = head("multipart/mixed; boundary=\"att\"", "\r\n").into_bytes();
    write!(m, "\r\n--att\r\nContent-Type: text/html\r\n\r\n<img src=\"{TRACKER}\">\r\n--att\r\nContent-Type: application/octet-stream\r\nContent-Disposition: attachment; filename=\"big.bin\"\r\nContent-Transfer-Encoding: base64\r\n\r\n").unwrap();
    m.extend_from_slice(&b64_lines(&data));
    m.extend_from_slice(b"--att--\r\n");
    add("base64-attachment-50mb", m, Size::Big);

    // 100 MB single line in an HTML part (a tracker at the start).
    let n = scaled(scale, 100 << 20);
    let mut body = format!("<p><img src=\"{TRACKER}\">").into_bytes();
    body.resize(body.len() + n, b'a');
    add("single-line-100mb", html_mail(&body), Size::Big);
}
