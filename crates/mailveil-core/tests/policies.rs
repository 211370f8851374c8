//! `[[policy]]` entries: matched against the envelope recipients only, judged per
//! recipient, and for one copy to several recipients the strictest of their policies.

use mailveil_core::{Envelope, Policy, RuleSource, Rules, clean, clean_for, policy_groups};

/// The user's policies after a campaign-tag rule (utm_source).
fn rules(text: &str) -> Rules {
    let utm =
        "[[param]]\nid = \"utm\"\nnames = [\"utm_source\"]\nclass = \"campaign\"\nsource = \"t\"\n";
    Rules::compile(&[
        RuleSource {
            name: "params.toml".into(),
            text: utm.into(),
        },
        RuleSource {
            name: "user.toml".into(),
            text: text.into(),
        },
    ])
    .unwrap()
}

const IMAGE: &str = r#"<img src="https://images.shop.example/sale.png" alt="Sale">"#;
const LINK: &str = r#"<a href="https://shop.example/x?utm_source=news&amp;k=1">x</a>"#;

fn mail(to_header: &str) -> Vec<u8> {
    format!(
        "From: news@shop.example\r\nTo: {to_header}\r\nDisposition-Notification-To: news@shop.example\r\n\
         Subject: s\r\nContent-Type: text/html; charset=utf-8\r\n\r\n{IMAGE}{LINK}\r\n"
    )
    .into_bytes()
}

fn to(recipients: &[&str]) -> Envelope {
    Envelope {
        sender: Some("bounce@shop.example".into()),
        recipients: recipients.iter().map(|r| r.to_string()).collect(),
    }
}

fn text(raw: &[u8], envelope: &Envelope, rules: &Rules) -> String {
    String::from_utf8(clean(raw, envelope, &Policy::default(), rules).bytes).unwrap()
}

const STRICT_ALICE: &str = "[[policy]]\nid = \"alice-strict\"\nrecipients = [\"alice@example.org\"]\n\
    remote_content = \"strip\"\nstrip_read_receipts = true\nsource = \"t\"\n";
const LOOSE_BOB: &str = "[[policy]]\nid = \"bob-loose\"\nrecipients = [\"bob@example.org\"]\n\
    remote_content = \"keep\"\nkeep_campaign_params = true\nstrip_read_receipts = false\nsource = \"t\"\n";
const BOB_UNTOUCHED: &str = "[[policy]]\nid = \"bob-untouched\"\nrecipients = [\"bob@example.org\"]\n\
    tracking = \"keep\"\nsource = \"t\"\n";

#[test]
fn a_header_never_chooses_a_recipients_policy() {
    // A sender who names bob in To: (or Delivered-To:) must not get bob's policy for
    // carol's copy.
    let rules = rules(BOB_UNTOUCHED);
    for header in [
        "bob@example.org",
        "Bob <bob@example.org>, carol@example.org",
    ] {
        let out = text(&mail(header), &to(&["carol@example.org"]), &rules);
        assert!(!out.contains("skipped=policy"), "{header}: {out}");
        assert!(
            !out.contains("utm_source"),
            "{header}: carol's copy was not cleaned"
        );
    }
    let mut raw = b"Delivered-To: bob@example.org\r\n".to_vec();
    raw.extend(mail("carol@example.org"));
    assert!(!text(&raw, &to(&["carol@example.org"]), &rules).contains("skipped=policy"));
    // The envelope recipient still chooses it.
    let out = text(
        &mail("carol@example.org"),
        &to(&["bob@example.org"]),
        &rules,
    );
    assert!(out.contains("skipped=policy:bob-untouched"), "{out}");
    // Header addresses still count as the reader's for recipient tokens.
    let tracked = "From: n@shop.example\r\nTo: dave@example.org\r\nContent-Type: text/html\r\n\r\n\
        <a href=\"https://shop.example/x?who=dave@example.org\">x</a>\r\n";
    let out = text(tracked.as_bytes(), &to(&[]), &rules);
    assert!(!out.contains("who=dave"), "{out}");
}

#[test]
fn one_copy_for_several_recipients_gets_the_strictest_policy() {
    // Bob's loose policy comes later, so applied in order over both recipients it
    // used to win; each field now takes the stricter value.
    let rules = rules(&format!("{STRICT_ALICE}\n{LOOSE_BOB}"));
    let both = to(&["alice@example.org", "bob@example.org"]);
    let out = text(&mail("alice@example.org, bob@example.org"), &both, &rules);
    assert!(
        !out.contains("images.shop.example"),
        "strip beats keep: {out}"
    );
    assert!(!out.contains("Disposition-Notification-To"), "{out}");
    assert!(
        !out.contains("utm_source"),
        "campaign tags kept only if all keep"
    );
    // Each alone gets their own.
    let bob = text(&mail("x@example.org"), &to(&["bob@example.org"]), &rules);
    assert!(bob.contains("images.shop.example") && bob.contains("utm_source=news"));
    assert!(bob.contains("Disposition-Notification-To"));
    let alice = text(&mail("x@example.org"), &to(&["alice@example.org"]), &rules);
    assert!(!alice.contains("images.shop.example"));
}

#[test]
fn tracking_is_left_alone_only_when_every_recipient_says_so() {
    let rules = rules(&format!(
        "{BOB_UNTOUCHED}\n[[policy]]\nid = \"carol-untouched\"\nrecipients = [\"carol@example.org\"]\n\
         tracking = \"keep\"\nsource = \"t\"\n"
    ));
    let out = text(
        &mail("x"),
        &to(&["bob@example.org", "dave@example.org"]),
        &rules,
    );
    assert!(
        !out.contains("skipped=") && !out.contains("utm_source"),
        "{out}"
    );
    let out = text(
        &mail("x"),
        &to(&["bob@example.org", "carol@example.org"]),
        &rules,
    );
    assert!(out.contains("skipped=policy:bob-untouched"), "{out}");
}

#[test]
fn recipients_are_grouped_by_their_policies_and_each_group_cleaned_for_itself() {
    let rules = rules(&format!(
        "{STRICT_ALICE}\n{LOOSE_BOB}\n[[policy]]\nid = \"shop\"\nsenders = [\"shop.example\"]\n\
         keep_campaign_params = true\nsource = \"t\"\n"
    ));
    let envelope = to(&[
        "alice@example.org",
        "bob@example.org",
        "carol@example.org",
        "Alice@Example.org",
        "dave@example.org",
    ]);
    let raw = mail("list@example.org");
    let groups = policy_groups(&raw, &envelope, &rules);
    assert_eq!(groups, [vec![0, 3], vec![1], vec![2, 4]]);
    let copy = |g: &[usize]| {
        String::from_utf8(clean_for(&raw, &envelope, g, &Policy::default(), &rules).bytes).unwrap()
    };
    let alice = copy(&groups[0]);
    assert!(!alice.contains("images.shop.example") && alice.contains("utm_source=news"));
    let bob = copy(&groups[1]);
    assert!(bob.contains("images.shop.example") && bob.contains("Disposition-Notification-To"));
    let rest = copy(&groups[2]);
    assert!(rest.contains("images.shop.example") && rest.contains("utm_source=news"));
    assert!(policy_groups(&raw, &to(&[]), &rules).is_empty());
    // Sender policies match the From: header as before (the envelope sender here is
    // bounce@shop.example, which matches too; a From: alone is enough).
    let envelope = Envelope::to(["carol@example.org"]);
    assert!(copy_with(&raw, &envelope, &rules).contains("utm_source=news"));
}

fn copy_with(raw: &[u8], envelope: &Envelope, rules: &Rules) -> String {
    String::from_utf8(clean(raw, envelope, &Policy::default(), rules).bytes).unwrap()
}

#[test]
fn one_recipient_asking_for_signed_mail_to_be_cleaned_decides_the_shared_copy() {
    // Under keep, signed mail is left as it is unless a policy says `signed = "clean"`;
    // one copy to alice (clean) and bob (keep) is cleaned, and its original attached.
    let raw: &[u8] = include_bytes!("../../../tests/fixtures/signed/pgp-newsletter.eml");
    let rules = rules(
        "[[policy]]\nid = \"alice-signed\"\nrecipients = [\"alice@example.org\"]\n\
         signed = \"clean\"\nsource = \"t\"\n",
    );
    let bob_only = text(raw, &to(&["bob@example.org"]), &rules);
    assert!(bob_only.contains("multipart/signed"), "{bob_only}");
    for both in [
        to(&["alice@example.org", "bob@example.org"]),
        to(&["bob@example.org", "alice@example.org"]),
    ] {
        let out = text(raw, &both, &rules);
        assert!(out.contains("signed-original.eml"), "{out}");
    }
}
