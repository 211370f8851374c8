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
    let note = "note = \"ClearURLs lists 1 exception(s) for this provider that mailveil cannot express (see `# skipped:`): this rule applies there too\"\n";
    for (id, names, class, what) in [
        (
            "yourparam",
            r#"["yourparam"]"#,
            "subscriber",
            r#"rules[0] \"yourparam\""#,
        ),
        (
            "sess",
            r#"["sess_*"]"#,
            "subscriber",
            r#"rules[1] \"sess_.*\""#,
        ),
        (
            "pf-src",
            r#"["pf_src", "pd_src"]"#,
            "subscriber",
            r#"rules[2] \"p[fd]_src\""#,
        ),
        (
            "ref",
            r#"["ref", "ref_"]"#,
            "subscriber",
            r#"rules[4] \"ref_?\""#,
        ),
        (
            "aff",
            r#"["aff"]"#,
            "campaign",
            r#"referralMarketing[0] \"aff\""#,
        ),
    ] {
        assert_block(
            &toml,
            &format!(
                "[[param]]\nid = \"clearurls-example-shop-{id}\"\ntracker = \"clearurls-example-shop\"\nnames = {names}\nhosts = [\"shop.example\"]\nclass = \"{class}\"\nsource = \"ClearURLs data.min.json (clearurls-sample.json), provider \\\"Example Shop\\\", {what}\"\n{note}"
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
    assert_block(
        &toml,
        r#"[[param]]
id = "clearurls-globalrules-mv-rid"
tracker = "clearurls-globalrules"
names = ["mv_rid"]
class = "subscriber"
"#,
    );
    assert_block(
        &toml,
        r#"[[param]]
id = "clearurls-globalrules-xclid"
tracker = "clearurls-globalrules"
names = ["xclid", "?xclid"]
class = "click-id"
"#,
    );
    assert_block(
        &toml,
        r#"id = "clearurls-globalrules-partner-ref"
tracker = "clearurls-globalrules"
names = ["partner_ref"]
class = "campaign"
"#,
    );
    assert_block(
        &toml,
        r#"[[param]]
id = "clearurls-megamart-mm-track"
tracker = "clearurls-megamart"
names = ["mm_track"]
hosts = ["megamart.*", "*.megamart.*"]
class = "subscriber"
source = "ClearURLs data.min.json (clearurls-sample.json), provider \"megamart\", rules[0] \"mm_track\""

[[param]]
id = "clearurls-megamart-mm-cid"
tracker = "clearurls-megamart"
names = ["mm_cid", "mm_uid", "mx_cid", "mx_uid"]
hosts = ["megamart.*", "*.megamart.*"]
class = "subscriber"
"#,
    );
    // An unescaped '.' in a host is read as a dot; a repeated rule is imported once.
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
    // Exceptions on whole hosts keep the provider's parameters there; on a path, a pixel.
    assert_block(
        &toml,
        r#"[[param]]
id = "clearurls-globalrules-except-intranet-example"
tracker = "clearurls-globalrules"
names = ["mv_rid", "xclid", "?xclid", "partner_ref"]
hosts = ["intranet.example"]
class = "subscriber"
action = "keep"
source = "ClearURLs data.min.json (clearurls-sample.json), provider \"globalRules\", exceptions[1] \"^https?:\\/\\/(?:[a-z0-9-]+\\.)*?intranet\\.example\""
note = "A ClearURLs exception, as action = \"keep\": it also turns off other rules for these names on these hosts (recipient-address detection still applies)"
"#,
    );
    assert_block(
        &toml,
        r#"[[param]]
id = "clearurls-example-shop-except-help-shop-example"
tracker = "clearurls-example-shop"
names = ["yourparam", "sess_*", "pf_src", "pd_src", "ref", "ref_", "aff"]
hosts = ["help.shop.example"]
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
    // No tracker for a provider of which nothing was imported.
    assert!(!toml.contains("id = \"clearurls-links-exact-host\""));
    assert!(!toml.contains("id = \"clearurls-megamart-search\""));

    let expected_skips = [
        r#"# skipped: provider "Example Shop" rules[3] "[^a-z%0-9]vid": a character class with ranges or negation has no glob"#,
        r#"# skipped: provider "Example Shop" rules[5] "cmp.id": '.' (any one character) has no glob"#,
        r#"# skipped: provider "Example Shop" redirections[1] "^https?:\/\/(?:[a-z0-9-]+\.)*?shop\.example\/out\/(https?.*)": the destination is not a query parameter's value"#,
        r#"# skipped: provider "Example Shop" rawRules[0] "\/ref=[^/?]*": a raw rule edits the URL text (often the path), which mailveil never does"#,
        r#"# skipped: provider "Example Shop" exceptions[0] "^https?:\/\/(?:[a-z0-9-]+\.)*?shop\.example\/checkout": mailveil cannot except a path from parameter or redirect rules, so this provider's parameter rules and redirects still apply to these URLs"#,
        r#"# skipped: provider "Example Shop" exceptions[1] "^https?:\/\/(?:[a-z0-9-]+\.)*?help\.shop\.example": mailveil cannot except redirects, so this provider's redirects still apply to these URLs"#,
        r#"# skipped: provider "globalRules" rules[2] "tr_[a-z]+": a repetition other than '.*' or '?' has no glob"#,
        r#"# skipped: provider "globalRules" exceptions[0] "^https?:\/\/(?:[a-z0-9-]+\.)*?bank\.example\/login": mailveil cannot except a path from parameter or redirect rules, so this provider's parameter rules still apply to these URLs"#,
        r#"# skipped: provider "links exact host" rules[0] "lid": urlPattern "^https?:\/\/links\.example\.org": only the exact host links.example.org, and a mailveil host glob also matches its subdomains"#,
        r#"# skipped: provider "megamart search" rules[0] "qid": the urlPattern "^https?:\/\/(?:[a-z0-9-]+\.)*?megamart(?:\.[a-z]{2,}){1,}\/s\?" is limited to a path, and a [[param]] applies to the whole host"#,
        r#"# skipped: provider "megamart search" redirections[0] "^https?:\/\/(?:[a-z0-9-]+\.)*?megamart(?:\.[a-z]{2,}){1,}\/r\?.*?u=([^&]*)": reaches beyond the provider's urlPattern "^https?:\/\/(?:[a-z0-9-]+\.)*?megamart(?:\.[a-z]{2,}){1,}\/s\?""#,
    ];
    let mut got = skipped_lines(&toml);
    got.sort_unstable();
    let mut want = expected_skips.to_vec();
    want.sort_unstable();
    assert_eq!(got, want);
    assert!(
        stderr.contains("imported 22 entries from clearurls-sample.json; skipped 11"),
        "{stderr}"
    );
    assert_compiles(&toml, "clearurls-");
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
