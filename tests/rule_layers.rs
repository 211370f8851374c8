//! Rules that users own: their files override shipped entries by id, turn rules off with
//! `action = "keep"`, exempt senders, hosts and URLs with `[[allow]]`, and set policies
//! per sender and per recipient with `[[policy]]`.

use mailveil::{Envelope, FindingKind, Policy, RuleSource, Rules, clean, rule_files};

fn with_user(text: &str) -> Rules {
    let mut sources = rule_files::shipped();
    sources.push(RuleSource {
        name: "user.toml".into(),
        text: text.into(),
    });
    Rules::compile(&sources).unwrap()
}

fn mail(from: &str, to: &str, html: &str) -> Vec<u8> {
    format!("From: {from}\r\nTo: {to}\r\nSubject: s\r\nContent-Type: text/html; charset=utf-8\r\n\r\n{html}\r\n").into_bytes()
}

const PIXEL: &str = r#"<img src="https://news.us3.list-manage.com/track/open.php?u=1&amp;e=2" width="1" height="1">"#;
const IMAGE: &str = r#"<img src="https://images.bank.example/logo.png" alt="Bank">"#;
const LINK: &str = r#"<a href="https://shop.example/x?utm_source=news&amp;k=1">x</a>"#;

fn run(raw: &[u8], to: &str, rules: &Rules, policy: &Policy) -> String {
    String::from_utf8(clean(raw, &Envelope::to([to]), policy, rules).bytes).unwrap()
}

#[test]
fn a_user_file_overrides_a_shipped_rule_by_id_and_can_turn_it_off() {
    // A Litmus beacon that no heuristic would catch: only its rule removes it.
    let beacon =
        r#"<img src="https://x9y8.emltrk.com/v2/x9y8?d=42" alt="" width="600" height="20">"#;
    let shipped = with_user("");
    let raw = mail("news@shop.example", "r@example.org", beacon);
    assert!(!run(&raw, "r@example.org", &shipped, &Policy::default()).contains("emltrk"));
    let (file, _) = shipped.locate("litmus-emltrk").unwrap();
    assert_eq!(file, "shipped:email-analytics.toml");
    let off = with_user(
        "[[pixel]]\nid = \"litmus-emltrk\"\ntracker = \"litmus\"\nhost = \"emltrk.com\"\naction = \"keep\"\nsource = \"user\"\n",
    );
    assert_eq!(off.locate("litmus-emltrk").unwrap().0, "user.toml");
    let out = run(&raw, "r@example.org", &off, &Policy::default());
    assert!(
        out.contains("emltrk.com/v2/x9y8"),
        "the user's keep override was ignored"
    );
}

#[test]
fn a_keep_param_rule_wins_over_a_shipped_strip_rule() {
    let raw = mail("news@shop.example", "r@example.org", LINK);
    assert!(!run(&raw, "r@example.org", &with_user(""), &Policy::default()).contains("utm_source"));
    let keep = with_user(
        "[[param]]\nid = \"keep-utm-source\"\nnames = [\"utm_source\"]\nclass = \"campaign\"\naction = \"keep\"\nsource = \"user\"\n",
    );
    assert!(run(&raw, "r@example.org", &keep, &Policy::default()).contains("utm_source=news"));
}

#[test]
fn allowed_senders_pass_untouched_and_allowed_hosts_are_never_touched() {
    let rules = with_user(
        "[[allow]]\nid = \"my-bank\"\nsenders = [\"bank.example\"]\nsource = \"user\"\n\n\
         [[allow]]\nid = \"bank-images\"\nhosts = [\"images.bank.example\"]\nsource = \"user\"\n",
    );
    let raw = mail("Bank <alerts@mail.bank.example>", "r@example.org", PIXEL);
    let out = run(&raw, "r@example.org", &rules, &Policy::default());
    assert!(
        out.starts_with("X-Mailveil: v=") && out.contains("skipped=allow:my-bank"),
        "{out}"
    );
    assert!(out.ends_with(&String::from_utf8(raw.clone()).unwrap()));
    let strip = Policy {
        remote_content: mailveil::RemoteContent::Strip,
        ..Policy::default()
    };
    let raw = mail(
        "news@shop.example",
        "r@example.org",
        &format!("{IMAGE}{PIXEL}"),
    );
    let out = run(&raw, "r@example.org", &rules, &strip);
    assert!(
        out.contains("images.bank.example/logo.png"),
        "an allowed host was stripped"
    );
    assert!(!out.contains("list-manage"));
}

#[test]
fn policies_apply_per_recipient_and_per_sender() {
    let rules = with_user(
        "[[policy]]\nid = \"alice-strict\"\nrecipients = [\"alice@example.org\"]\nremote_content = \"strip\"\nsource = \"user\"\n\n\
         [[policy]]\nid = \"bob-leave-alone\"\nrecipients = [\"bob@example.org\"]\ntracking = \"keep\"\nsource = \"user\"\n\n\
         [[policy]]\nid = \"shop-campaigns\"\nsenders = [\"*@shop.example\"]\nkeep_campaign_params = true\nsource = \"user\"\n",
    );
    let raw = |to: &str| mail("news@shop.example", to, &format!("{IMAGE}{PIXEL}{LINK}"));
    let alice = run(
        &raw("alice@example.org"),
        "alice@example.org",
        &rules,
        &Policy::default(),
    );
    assert!(
        !alice.contains("images.bank.example"),
        "alice wants no remote content"
    );
    assert!(
        alice.contains("utm_source=news"),
        "the sender's policy keeps campaign tags"
    );
    let bob = run(
        &raw("bob@example.org"),
        "bob@example.org",
        &rules,
        &Policy::default(),
    );
    assert!(
        bob.contains("skipped=policy:bob-leave-alone") && bob.contains("list-manage"),
        "{bob}"
    );
    let carol = run(
        &raw("carol@example.org"),
        "carol@example.org",
        &rules,
        &Policy::default(),
    );
    assert!(carol.contains("images.bank.example") && !carol.contains("list-manage"));
    let report = clean(
        &raw("carol@example.org"),
        &Envelope::to(["carol@example.org"]),
        &Policy::default(),
        &rules,
    )
    .report;
    assert!(report.findings.iter().any(|f| f.kind == FindingKind::Pixel));
}

#[test]
fn a_to_header_does_not_choose_a_recipients_policy() {
    // Bob's policy leaves mail untouched; a sender who writes bob into To: must not get
    // that for carol's copy. Only the envelope recipient chooses.
    let rules = with_user(
        "[[policy]]\nid = \"bob-leave-alone\"\nrecipients = [\"bob@example.org\"]\ntracking = \"keep\"\nsource = \"user\"\n",
    );
    let raw = mail("news@shop.example", "bob@example.org", PIXEL);
    let carol = run(&raw, "carol@example.org", &rules, &Policy::default());
    assert!(
        !carol.contains("skipped=policy") && !carol.contains("list-manage"),
        "{carol}"
    );
    let bob = run(&raw, "bob@example.org", &rules, &Policy::default());
    assert!(bob.contains("skipped=policy:bob-leave-alone"), "{bob}");
}

#[test]
fn later_directories_override_earlier_ones() {
    let first = tempfile::tempdir().unwrap();
    let second = tempfile::tempdir().unwrap();
    let tracker =
        "[[tracker]]\nid = \"acme\"\nname = \"ACME\"\ncategory = \"esp\"\nsource = \"t\"\n";
    std::fs::write(first.path().join("a.toml"), format!("{tracker}\n[[pixel]]\nid = \"acme-open\"\ntracker = \"acme\"\nhost = \"t.acme.example\"\nsource = \"first\"\n")).unwrap();
    std::fs::write(second.path().join("b.toml"), "[[pixel]]\nid = \"acme-open\"\ntracker = \"acme\"\nhost = \"other.acme.example\"\nsource = \"second\"\n").unwrap();
    let (rules, errors) = rule_files::load(
        &[first.path().to_path_buf(), second.path().to_path_buf()],
        false,
    );
    assert!(errors.is_empty(), "{errors:?}");
    assert!(rules.match_pixel("t.acme.example", "/o").is_none());
    assert!(rules.match_pixel("other.acme.example", "/o").is_some());
    assert!(rules.locate("acme-open").unwrap().0.ends_with("b.toml"));
}

#[test]
fn functional_rules_keep_a_link_working() {
    let link =
        |text: &str, url: &str| format!(r#"<a href="{}">{text}</a>"#, url.replace('&', "&amp;"));
    // A subscriber id a functional link needs stays; a campaign tag goes even there
    // (issue 18 item 2).
    let url = "https://shop.example/konto?uid=7&mc_eid=ab12&utm_source=news";
    let raw = mail(
        "news@shop.example",
        "r@example.org",
        &link("Vertrag kündigen", url),
    );
    assert!(!run(&raw, "r@example.org", &with_user(""), &Policy::default()).contains("mc_eid"));
    let rules = with_user(
        "[[functional]]\nid = \"cancel-de\"\nwords = [\"kündigen\"]\nsource = \"user\"\n\n[[functional]]\nid = \"account-host\"\nhosts = [\"account.shop.example\"]\nsource = \"user\"\n",
    );
    let out = run(&raw, "r@example.org", &rules, &Policy::default());
    assert!(
        out.contains("konto?uid=7&amp;mc_eid=ab12\""),
        "a functional word in the link text: {out}"
    );
    let raw = mail(
        "news@shop.example",
        "r@example.org",
        &link(
            "Go",
            "https://account.shop.example/x?mc_eid=ab12&utm_source=news",
        ),
    );
    let out = run(&raw, "r@example.org", &rules, &Policy::default());
    assert!(out.contains("x?mc_eid=ab12\""), "a functional host: {out}");
}
