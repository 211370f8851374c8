//! `mailveil rules import clearurls|removeparam`: the sample lists in
//! tests/fixtures/import (written for these tests) become one rule file that compiles with
//! the shipped rules, has exactly the expected entries and `# skipped:` lines, and whose
//! parameter rules really clean links.

use mailveil::{Envelope, Policy, RuleSource, Rules, clean, rule_files};
use std::collections::HashSet;
use std::path::Path;
use std::process::{Command, Output};

const BIN: &str = env!("CARGO_BIN_EXE_mailveil");
const CLEARURLS: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fixtures/import/clearurls-sample.json"
);
const REMOVEPARAM: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fixtures/import/removeparam-sample.txt"
);

fn run(args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .output()
        .expect("the mailveil binary runs")
}

/// The rule file an importer writes on stdout, and its stderr.
fn import(format: &str, file: &str) -> (String, String) {
    let out = run(&["rules", "import", format, file]);
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(out.status.success(), "import {format} failed: {stderr}");
    (String::from_utf8(out.stdout).unwrap(), stderr)
}

fn skipped_lines(toml: &str) -> Vec<&str> {
    toml.lines()
        .filter(|l| l.starts_with("# skipped: "))
        .collect()
}

fn ids(toml: &str) -> Vec<String> {
    toml.lines()
        .filter_map(|l| l.strip_prefix("id = \""))
        .map(|l| l.trim_end_matches('"').to_string())
        .collect()
}

fn with_shipped(name: &str, toml: &str) -> Vec<RuleSource> {
    let mut sources = rule_files::shipped();
    sources.push(RuleSource {
        name: name.into(),
        text: toml.into(),
    });
    sources
}

fn assert_block(toml: &str, block: &str) {
    assert!(
        toml.contains(block),
        "expected this entry:\n{block}\nin:\n{toml}"
    );
}

/// The output compiles with the shipped rules, its ids are unique, prefixed, and never
/// those of a shipped entry (which they would silently replace).
fn assert_compiles(toml: &str, prefix: &str) {
    Rules::compile(&with_shipped("imported.toml", toml)).expect("imported rules compile");
    let mine = ids(toml);
    assert!(!mine.is_empty());
    let unique: HashSet<&String> = mine.iter().collect();
    assert_eq!(unique.len(), mine.len(), "duplicate ids in {mine:?}");
    assert!(mine.iter().all(|id| id.starts_with(prefix)), "{mine:?}");
    let shipped: HashSet<String> = rule_files::shipped()
        .iter()
        .flat_map(|s| ids(&s.text))
        .collect();
    assert!(mine.iter().all(|id| !shipped.contains(id)));
}

const MAIL: &str = "From: News <news@shop.example>\r\n\
To: r@example.org\r\n\
Subject: Offers\r\n\
MIME-Version: 1.0\r\n\
Content-Type: text/html; charset=utf-8\r\n\
Content-Transfer-Encoding: 7bit\r\n\
\r\n\
<html><body>\r\n\
<p><a href=\"https://shop.example/x?yourparam=1&amp;keep=2\">Shop</a></p>\r\n\
<p><a href=\"https://shop.example/go?s=1&amp;to=https%3A%2F%2Fdest.example%2Fpage%3Fid%3D7\">Go</a></p>\r\n\
<p><img src=\"https://img.pixel.example.net/banner/summer.jpg?w=600\" alt=\"Summer\"></p>\r\n\
<p><a href=\"https://shop.example/y?mv_rid=9&amp;keep=3\">Tracked</a></p>\r\n\
<p><a href=\"https://wiki.intranet.example/doc?mv_rid=5&amp;keep=4\">Excepted</a></p>\r\n\
</body></html>\r\n";

fn cleaned_html(rules: &Rules) -> String {
    let out = clean(
        MAIL.as_bytes(),
        &Envelope::to(["r@example.org"]),
        &Policy::default(),
        rules,
    );
    assert!(out.report.error.is_none(), "{:?}", out.report.error);
    String::from_utf8(out.bytes).unwrap()
}

#[test]
fn clearurls_sample_becomes_exact_entries_and_skipped_lines() {
    let (toml, stderr) = import("clearurls", CLEARURLS);
    assert_block(
        &toml,
        r#"[[tracker]]
id = "clearurls-example-shop"
name = "Example Shop"
category = "other"
source = "ClearURLs data.min.json (clearurls-sample.json), provider \"Example Shop\", urlPattern \"^https?:\\/\\/(?:[a-z0-9-]+\\.)*?shop\\.example\""
"#,
    );
    // Names: globs where the rule has an exact one, else the rule itself as a pattern.
    for (id, names, class, what) in [
        (
            "yourparam",
            r#"names = ["yourparam"]"#,
            "subscriber",
            r#"rules[0] \"yourparam\""#,
        ),
        (
            "sess",
            r#"names = ["sess_*"]"#,
            "subscriber",
            r#"rules[1] \"sess_.*\""#,
        ),
        (
            "pf-src",
            r#"names = ["pf_src", "pd_src"]"#,
            "subscriber",
            r#"rules[2] \"p[fd]_src\""#,
        ),
        (
            "a-z-0-9-vid",
            r#"patterns = ["[^a-z%0-9]vid"]"#,
            "subscriber",
            r#"rules[3] \"[^a-z%0-9]vid\""#,
        ),
        (
            "ref",
            r#"names = ["ref", "ref_"]"#,
            "subscriber",
            r#"rules[4] \"ref_?\""#,
        ),
        (
            "cmp-id",
            r#"patterns = ["cmp.id"]"#,
            "subscriber",
            r#"rules[5] \"cmp.id\""#,
        ),
        (
            "aff",
            r#"names = ["aff"]"#,
            "campaign",
            r#"referralMarketing[0] \"aff\""#,
        ),
    ] {
        assert_block(
            &toml,
            &format!(
                "[[param]]\nid = \"clearurls-example-shop-{id}\"\ntracker = \"clearurls-example-shop\"\n{names}\nhosts = [\"shop.example\"]\nclass = \"{class}\"\nsource = \"ClearURLs data.min.json (clearurls-sample.json), provider \\\"Example Shop\\\", {what}\"\n\n"
            ),
        );
    }
    for param in ["to", "dest"] {
        assert_block(
            &toml,
            &format!(
                "[[redirect]]\nid = \"clearurls-example-shop-redirect-{param}\"\ntracker = \"clearurls-example-shop\"\nhost = \"shop.example\"\npath = \"/go?\"\nopaque = false\nparam = \"{param}\"\nencoding = \"plain\"\n"
            ),
        );
    }
    // `%3F` stays as written: ClearURLs tests decoded names, as mailveil does.
    assert_block(
        &toml,
        r#"[[param]]
id = "clearurls-globalrules-xclid"
tracker = "clearurls-globalrules"
names = ["xclid", "%3fxclid"]
class = "click-id"
"#,
    );
    assert_block(
        &toml,
        r#"[[param]]
id = "clearurls-globalrules-tr-a-z"
tracker = "clearurls-globalrules"
patterns = ["tr_[a-z]+"]
class = "subscriber"
"#,
    );
    // A rule whose globs would be many (`[a-z]?` is 27 each way) is written as its pattern.
    assert_block(
        &toml,
        r#"patterns = ["(?:%3F)?[a-z]?mk"]
class = "subscriber"
"#,
    );
    // A provider limited to a path: `paths`. One on an exact host: `=host`.
    assert_block(
        &toml,
        r#"[[param]]
id = "clearurls-megamart-search-qid"
tracker = "clearurls-megamart-search"
names = ["qid"]
hosts = ["megamart.*", "*.megamart.*"]
paths = ["/s?"]
class = "subscriber"
"#,
    );
    assert_block(
        &toml,
        r#"[[param]]
id = "clearurls-links-exact-host-lid"
tracker = "clearurls-links-exact-host"
names = ["lid"]
hosts = ["=links.example.org"]
class = "subscriber"
"#,
    );
    assert_block(
        &toml,
        r#"host = "=links.example.org"
path = "/away.php?"
opaque = false
param = "to"
"#,
    );
    // Host forms: a short range (l[a-c]?), an unanchored pattern (read anchored: less),
    // a run of subdomain characters, a capture group.
    for host in [
        "=l.social.example",
        "=la.social.example",
        "=lc.social.example",
    ] {
        assert!(
            toml.contains(&format!("host = \"{host}\"\npath = \"/l.php?\"")),
            "{host}"
        );
    }
    assert!(
        toml.contains("hosts = [\"=outgoing.example.net\"]"),
        "{toml}"
    );
    assert!(toml.contains("hosts = [\"*.stock.example\"]"), "{toml}");
    assert!(
        toml.contains("hosts = [\"micro.cn\", \"micro.com\"]"),
        "{toml}"
    );
    assert_block(
        &toml,
        r#"[[param]]
id = "clearurls-newsco-nid"
tracker = "clearurls-newsco"
names = ["nid"]
hosts = ["news.example"]
class = "subscriber"
source = "ClearURLs data.min.json (clearurls-sample.json), provider \"newsco\", rules[0] \"nid\""

# duplicate: provider "newsco" rules[1] "nid": the same names as clearurls-newsco-nid
"#,
    );
    assert_block(
        &toml,
        r#"[[pixel]]
id = "clearurls-pixelco-block"
tracker = "clearurls-pixelco"
host = "pixel.example.net"
"#,
    );
    // Exceptions: on hosts and paths, for parameters (names and patterns), pixels and the
    // redirects they overlap; read at least as widely as ClearURLs reads them.
    let all_global = r#"names = ["mv_rid", "xclid", "%3fxclid", "partner_ref"]
patterns = ["tr_[a-z]+", "(?:%3F)?[a-z]?mk"]"#;
    for (id, hosts, paths, i) in [
        (
            "bank-example",
            r#"["bank.example"]"#,
            "paths = [\"/login\"]\n",
            0,
        ),
        ("intranet-example", r#"["intranet.example"]"#, "", 1),
        (
            "forum-example",
            r#"["forum.example"]"#,
            "paths = [\"/*?*ref=*\", \"/*?*&ref=*\"]\n",
            2,
        ),
        ("bugtracker", r#"["=bugtracker.*"]"#, "", 3),
    ] {
        assert_block(
            &toml,
            &format!(
                "[[param]]\nid = \"clearurls-globalrules-except-{id}\"\ntracker = \"clearurls-globalrules\"\n{all_global}\nhosts = {hosts}\n{paths}class = \"subscriber\"\naction = \"keep\"\nsource = \"ClearURLs data.min.json (clearurls-sample.json), provider \\\"globalRules\\\", exceptions[{i}]"
            ),
        );
    }
    assert_block(
        &toml,
        r#"[[param]]
id = "clearurls-example-shop-except-shop-example"
tracker = "clearurls-example-shop"
names = ["yourparam", "sess_*", "pf_src", "pd_src", "ref", "ref_", "aff"]
patterns = ["[^a-z%0-9]vid", "cmp.id"]
hosts = ["shop.example"]
paths = ["/checkout"]
class = "subscriber"
action = "keep"
"#,
    );
    assert_block(
        &toml,
        r#"[[redirect]]
id = "clearurls-example-shop-except-redirect"
tracker = "clearurls-example-shop"
host = "help.shop.example"
opaque = false
action = "keep"
"#,
    );
    assert_block(
        &toml,
        r#"[[param]]
id = "clearurls-social-except-social-example"
tracker = "clearurls-social"
names = ["s_ref"]
hosts = ["social.example"]
paths = ["/*plugins/", "/*ajax/"]
class = "subscriber"
action = "keep"
"#,
    );
    assert_block(
        &toml,
        r#"[[pixel]]
id = "clearurls-pixelco-except"
tracker = "clearurls-pixelco"
host = "pixel.example.net"
path = "/consent/"
action = "keep"
"#,
    );

    let expected_skips = [
        r#"# skipped: provider "Example Shop" redirections[1] "^https?:\/\/(?:[a-z0-9-]+\.)*?shop\.example\/out\/(https?.*)": the destination is not a query parameter's value"#,
        r#"# skipped: provider "Example Shop" rawRules[0] "\/ref=[^/?]*": a raw rule edits the URL text (often the path), which mailveil never does"#,
        r#"# skipped: provider "globalRules" rules[4] "a{": unclosed '{', and as a pattern: pattern "a{": error: repetition quantifier expects a valid decimal"#,
        r#"# skipped: provider "globalRules" rules[5] ".*": matches every parameter, and as a pattern: pattern ".*" matches (nearly) every parameter name"#,
        r#"# skipped: provider "globalRules" exceptions[4] "^https?:\/\/[^/]+\/[^/]+\/-\/refs\/switch": the host part matches every host, so this provider's entries above also apply to these URLs"#,
        r#"# skipped: provider "globalRules" exceptions[5] "^wss?:\/\/(?:[a-z0-9-]+\.)*?chat\.example": does not start with https?:// (mailveil rules cover both schemes), so this provider's entries above also apply to these URLs"#,
        r#"# skipped: provider "megamart search" redirections[0] "^https?:\/\/(?:[a-z0-9-]+\.)*?megamart(?:\.[a-z]{2,}){1,}\/r\?.*?u=([^&]*)": reaches beyond the provider's urlPattern "^https?:\/\/(?:[a-z0-9-]+\.)*?megamart(?:\.[a-z]{2,}){1,}\/s\?""#,
        r#"# skipped: provider "outgoing" redirections[0] "https?:\/\/[^/]+\/v1\/[0-9a-f]{64}\/(.*)": no plain host name after the scheme"#,
    ];
    let mut got = skipped_lines(&toml);
    got.sort_unstable();
    let mut want = expected_skips.to_vec();
    want.sort_unstable();
    assert_eq!(got, want);
    assert!(
        stderr.contains(
            "imported 54 entries from clearurls-sample.json; skipped 8 of 44 source entries (18.2%)"
        ),
        "{stderr}"
    );
    assert_compiles(&toml, "clearurls-");
}

/// Issue 18 item 5: what the new constructs say holds in a mail: a pattern name, a
/// path-scoped rule, an exact host, and exceptions on paths for parameters and redirects.
#[test]
fn imported_patterns_paths_exact_hosts_and_path_exceptions_hold_in_a_mail() {
    let (toml, _) = import("clearurls", CLEARURLS);
    let rules = Rules::compile(&with_shipped("imported.toml", &toml)).unwrap();
    let links = [
        (
            "https://a.example/p?tr_ab=1&amp;tr_1=2",
            "https://a.example/p?tr_1=2",
        ),
        (
            "https://www.shop.example/x?_vid=1&amp;xvid=2&amp;cmpXid=3",
            "https://www.shop.example/x?xvid=2",
        ),
        (
            "https://megamart.de/s?q=tea&amp;qid=9",
            "https://megamart.de/s?q=tea",
        ),
        (
            "https://megamart.de/p/1?qid=9",
            "https://megamart.de/p/1?qid=9",
        ),
        (
            "https://links.example.org/a?lid=1&amp;k=1",
            "https://links.example.org/a?k=1",
        ),
        (
            "https://x.links.example.org/a?lid=1&amp;k=1",
            "https://x.links.example.org/a?lid=1&amp;k=1",
        ),
        (
            "https://bank.example/login?mv_rid=1&amp;k=2",
            "https://bank.example/login?mv_rid=1&amp;k=2",
        ),
        (
            "https://bank.example/home?mv_rid=1&amp;k=2",
            "https://bank.example/home?k=2",
        ),
        (
            "https://forum.example/t/9?page=2&amp;ref=x&amp;mv_rid=1",
            "https://forum.example/t/9?page=2&amp;ref=x&amp;mv_rid=1",
        ),
        (
            "https://bugtracker.example.com/b?mv_rid=1",
            "https://bugtracker.example.com/b?mv_rid=1",
        ),
        (
            "https://help.shop.example/go?to=https%3A%2F%2Fdest.example%2F",
            "https://help.shop.example/go?to=https%3A%2F%2Fdest.example%2F",
        ),
        (
            "https://lb.social.example/l.php?u=https%3A%2F%2Fdest.example%2Fs",
            "https://dest.example/s",
        ),
    ];
    let body: String = links
        .iter()
        .map(|(href, _)| format!("<p><a href=\"{href}\">link</a></p>\r\n"))
        .collect();
    let mail = format!(
        "From: n@sender.example\r\nTo: r@example.org\r\nContent-Type: text/html; charset=utf-8\r\n\r\n{body}"
    );
    let out = clean(
        mail.as_bytes(),
        &Envelope::to(["r@example.org"]),
        &Policy::default(),
        &rules,
    );
    let html = String::from_utf8(out.bytes).unwrap();
    for (href, expected) in links {
        assert!(
            html.contains(&format!("href=\"{expected}\"")),
            "{href} should become {expected}:\n{html}"
        );
    }
}

#[test]
fn removeparam_sample_becomes_exact_entries_and_skipped_lines() {
    let (toml, stderr) = import("removeparam", REMOVEPARAM);
    for (id, names, hosts, class, line) in [
        (
            "mv-rid",
            r#"["mv_rid"]"#,
            "",
            "subscriber",
            "line 4: $removeparam=mv_rid",
        ),
        (
            "utm",
            r#"["utm_*"]"#,
            "",
            "campaign",
            "line 5: $removeparam=/^utm_/",
        ),
        (
            "shop-example-yourparam",
            r#"["yourparam"]"#,
            "hosts = [\"shop.example\"]\n",
            "subscriber",
            "line 6: ||shop.example^$removeparam=yourparam",
        ),
        (
            "xclid",
            r#"["xclid", "yclid_x"]"#,
            "",
            "click-id",
            "line 7: $removeparam=/^(xclid|yclid_x)=/i",
        ),
        (
            "gbx",
            r#"["gbx"]"#,
            "",
            "subscriber",
            "line 8: $removeparam=gbx,~xmlhttprequest",
        ),
        (
            "campaign-id",
            r#"["*campaign_id*"]"#,
            "",
            "subscriber",
            "line 9: $removeparam=/campaign_id/",
        ),
        (
            "megamart-mm-ref",
            r#"["mm_ref"]"#,
            "hosts = [\"megamart.*\", \"*.megamart.*\"]\n",
            "subscriber",
            "line 10: ||megamart.*^$removeparam=mm_ref",
        ),
    ] {
        assert_block(
            &toml,
            &format!(
                "[[param]]\nid = \"removeparam-{id}\"\nnames = {names}\n{hosts}class = \"{class}\"\nsource = \"$removeparam list removeparam-sample.txt, {line}\"\n\n"
            ),
        );
    }
    // Exceptions on a domain keep the parameter there; `@@...$removeparam` keeps every
    // parameter this list removes there (not yourparam: removed on shop.example only).
    assert_block(
        &toml,
        r#"[[param]]
id = "removeparam-bank-example-keep-mv-rid"
names = ["mv_rid"]
hosts = ["bank.example"]
class = "subscriber"
action = "keep"
source = "$removeparam list removeparam-sample.txt, line 12: @@||bank.example^$removeparam=mv_rid"
note = "An exception (@@), as action = \"keep\": it also turns off other rules for the same names on these hosts (recipient-address detection still applies)"
"#,
    );
    assert_block(
        &toml,
        r#"[[param]]
id = "removeparam-intranet-example-keep-mv-rid"
names = ["mv_rid", "utm_*", "xclid", "yclid_x", "gbx", "*campaign_id*"]
hosts = ["intranet.example"]
class = "subscriber"
action = "keep"
"#,
    );
    assert_eq!(
        skipped_lines(&toml),
        [
            "# skipped: line 15 `$removeparam=/^tr_[a-z]+=/`: a repetition other than '.*' or '?' has no glob",
            "# skipped: line 16 `$removeparam=/^sid=abc$/`: looks at parameter values",
            "# skipped: line 17 `@@$removeparam=gbx`: an exception on every host would turn off mailveil's own rules for these names everywhere",
            "# skipped: line 18 `$removeparam=~keep`: inverted: removes every parameter except the one named",
            "# skipped: line 19 `$removeparam`: removes every parameter (too broad)",
            "# skipped: line 20 `||news.example^$removeparam=ref,domain=social.example`: limited to requests made from some pages ($domain), which a mail link is not",
            "# skipped: line 21 `||news.example/article/$removeparam=src`: the URL pattern \"||news.example/article/\" is not a whole domain (||example.com^), and a [[param]] applies to whole hosts",
            "# skipped: line 22 `$removeparam=fbx,xmlhttprequest`: limited to $xmlhttprequest requests, and a link in a mail is a document",
            "# skipped: line 24 `$removeparam=safari_only`: inside a !#if block: meant for some platforms only",
            "# skipped: line 26 `$queryprune=old`: the old uBO $queryprune syntax",
        ]
    );
    assert!(toml.contains("# 2 line(s) of removeparam-sample.txt are not $removeparam filters"));
    assert!(
        stderr.contains("imported 9 entries from removeparam-sample.txt; skipped 10"),
        "{stderr}"
    );
    assert_compiles(&toml, "removeparam-");
}

#[test]
fn imported_param_rules_strip_the_parameter_from_links() {
    let shipped = Rules::compile(&rule_files::shipped()).unwrap();
    let before = cleaned_html(&shipped);
    assert!(
        before.contains("https://shop.example/x?yourparam=1&amp;keep=2"),
        "the shipped rules alone keep the parameter:\n{before}"
    );
    for (format, file) in [("clearurls", CLEARURLS), ("removeparam", REMOVEPARAM)] {
        let (toml, _) = import(format, file);
        let rules = Rules::compile(&with_shipped("imported.toml", &toml)).unwrap();
        let after = cleaned_html(&rules);
        assert!(
            after.contains("href=\"https://shop.example/x?keep=2\""),
            "{format}: the imported rule removes yourparam and keeps keep=2:\n{after}"
        );
        assert!(!after.contains("yourparam"), "{format}:\n{after}");
    }
}

#[test]
fn imported_exceptions_keep_the_parameter_on_their_hosts() {
    for (format, file) in [("clearurls", CLEARURLS), ("removeparam", REMOVEPARAM)] {
        let (toml, _) = import(format, file);
        let rules = Rules::compile(&with_shipped("imported.toml", &toml)).unwrap();
        let after = cleaned_html(&rules);
        assert!(
            after.contains("href=\"https://shop.example/y?keep=3\""),
            "{format}: mv_rid goes where no exception says otherwise:\n{after}"
        );
        assert!(
            after.contains("href=\"https://wiki.intranet.example/doc?mv_rid=5&amp;keep=4\""),
            "{format}: the exception keeps mv_rid on intranet.example:\n{after}"
        );
    }
}

#[test]
fn imported_redirect_rules_unwrap_links() {
    let (toml, _) = import("clearurls", CLEARURLS);
    let rules = Rules::compile(&with_shipped("imported.toml", &toml)).unwrap();
    let after = cleaned_html(&rules);
    assert!(
        after.contains("href=\"https://dest.example/page?id=7\""),
        "the ClearURLs redirection is unwrapped:\n{after}"
    );
}

#[test]
fn complete_providers_become_pixel_rules() {
    let shipped = Rules::compile(&rule_files::shipped()).unwrap();
    assert!(cleaned_html(&shipped).contains("img.pixel.example.net/banner/summer.jpg"));
    let (toml, _) = import("clearurls", CLEARURLS);
    let rules = Rules::compile(&with_shipped("imported.toml", &toml)).unwrap();
    let after = cleaned_html(&rules);
    assert!(
        !after.contains("img.pixel.example.net"),
        "an image from a ClearURLs completeProvider host is removed:\n{after}"
    );
}

#[test]
fn out_writes_a_file_ready_for_a_rules_directory() {
    let dir = tempfile::tempdir().unwrap();
    for (format, file, name) in [
        ("clearurls", CLEARURLS, "clearurls.toml"),
        ("removeparam", REMOVEPARAM, "removeparam.toml"),
    ] {
        let path = dir.path().join(name);
        let out = run(&[
            "rules",
            "import",
            format,
            file,
            "--out",
            path.to_str().unwrap(),
        ]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(out.stdout.is_empty(), "with --out nothing goes to stdout");
        let written = std::fs::read_to_string(&path).unwrap();
        assert_eq!(written, import(format, file).0);
    }
    // Both files together, on top of the shipped rules, as `--rules DIR` loads them.
    let (rules, errors) = rule_files::load(&[dir.path().to_path_buf()], false);
    assert!(errors.is_empty(), "{errors:?}");
    let shipped = Rules::compile(&rule_files::shipped()).unwrap();
    assert!(rules.stats().3 > shipped.stats().3);
    let check = run(&["rules", "check", dir.path().to_str().unwrap()]);
    assert!(
        check.status.success(),
        "{}",
        String::from_utf8_lossy(&check.stdout)
    );
}

#[test]
fn unreadable_or_malformed_input_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.json");
    std::fs::write(&bad, "{\"providers\": [").unwrap();
    let out = run(&["rules", "import", "clearurls", bad.to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("not a ClearURLs catalog"));
    let missing = Path::new(CLEARURLS).with_file_name("missing.json");
    let out = run(&["rules", "import", "removeparam", missing.to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot read"));
}

/// Exceptions for every parameter keep what the list removes on their hosts; those that
/// the same removals cover share one entry (so the output grows with the list, not with
/// exceptions times names), and each names its lines.
#[test]
fn exceptions_for_every_parameter_share_one_entry_per_group_of_removals() {
    let dir = tempfile::tempdir().unwrap();
    let list = dir.path().join("list.txt");
    std::fs::write(
        &list,
        "$removeparam=g1\n\
         ||example.org^$removeparam=z\n\
         @@||a.example^$removeparam\n\
         @@||sub.example.org^$removeparam\n\
         @@||b.example^$removeparam\n\
         $removeparam=g2\n",
    )
    .unwrap();
    let (toml, _) = import("removeparam", list.to_str().unwrap());
    assert_block(
        &toml,
        r#"[[param]]
id = "removeparam-a-example-keep-g1"
names = ["g1", "g2"]
hosts = ["a.example", "sub.example.org", "b.example"]
class = "subscriber"
action = "keep"
source = "$removeparam list list.txt, line 3: @@||a.example^$removeparam; line 4: @@||sub.example.org^$removeparam; line 5: @@||b.example^$removeparam"
"#,
    );
    assert_block(
        &toml,
        r#"[[param]]
id = "removeparam-sub-example-org-keep-z"
names = ["z"]
hosts = ["sub.example.org"]
class = "subscriber"
action = "keep"
source = "$removeparam list list.txt, line 4: @@||sub.example.org^$removeparam"
"#,
    );
    let keeps = toml.lines().filter(|l| *l == "action = \"keep\"").count();
    assert_eq!(keeps, 2, "{toml}");
    assert_compiles(&toml, "removeparam-");
    let rules = Rules::compile(&with_shipped("imported.toml", &toml)).unwrap();
    let mail = "From: n@shop.example\r\nContent-Type: text/html\r\n\r\n\
        <a href=\"https://a.example/?g1=1&amp;k=1\">a</a>\
        <a href=\"https://x.sub.example.org/?z=1&amp;g2=2\">s</a>\
        <a href=\"https://www.example.org/?z=1&amp;k=2\">o</a>\
        <a href=\"https://other.example/?g1=1&amp;k=3\">x</a>\r\n";
    let out = clean(
        mail.as_bytes(),
        &Envelope::default(),
        &Policy::default(),
        &rules,
    );
    let html = String::from_utf8(out.bytes).unwrap();
    for kept in [
        "https://a.example/?g1=1&amp;k=1",
        "https://x.sub.example.org/?z=1&amp;g2=2",
        "https://www.example.org/?k=2",
        "https://other.example/?k=3",
    ] {
        assert!(html.contains(kept), "{kept} not in:\n{html}");
    }
}
