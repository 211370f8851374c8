//! What authentication adds to a mail: the DKIM/ARC verdict with the key lookup answered
//! from the resolver's cache and with it asked of the DNS server (a fresh resolver each
//! mail), the Authentication-Results and the ARC seal after cleaning, against `clean()`
//! alone; then the `filter` binary per mail with and without `--authenticate`.
//!
//! `cargo bench --bench auth`: needs the tools of tests/auth.rs (`bash .ci/setup`). The
//! DNS server is tests/auth/dns_server.py on loopback (Python; a resolver on the network
//! adds its round trip to the uncached figure). Figures, not assertions: this machine is
//! shared and noisy.

#[path = "../tests/auth/harness.rs"]
mod harness;

use harness::*;
use mailveil::auth::{Authenticator, Resolver, Settings, verify};
use mailveil::{Envelope, Policy, Rules, clean};
use std::time::{Duration, Instant};

const N: u32 = 200;

fn per_mail(label: &str, n: u32, mut f: impl FnMut()) -> Duration {
    f(); // warm
    let started = Instant::now();
    for _ in 0..n {
        f();
    }
    let each = started.elapsed() / n;
    println!("{label:<58} {:>9.3} ms", each.as_secs_f64() * 1e3);
    each
}

fn main() {
    if !available() {
        return;
    }
    let dns = Dns::start(&keys().zone, false);
    let signed = dkimsign(&newsletter(), false);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let server = Some(dns.addr().parse().unwrap());
    let timeout = Duration::from_secs(5);
    let rules = Rules::default();
    let envelope = Envelope::to(["reader@example.org"]);
    let policy = Policy::default();

    println!(
        "one signed newsletter ({} bytes), RSA-2048 DKIM signature",
        signed.len()
    );
    let base = per_mail("clean() alone", N, || {
        clean(&signed, &envelope, &policy, &rules);
    });
    let cached = Resolver::new(server, timeout).unwrap();
    let warm = per_mail("verify, key in the resolver's cache", N, || {
        rt.block_on(verify(&signed, &cached));
    });
    let cold = per_mail(
        "verify, key asked of the DNS server (fresh resolver)",
        N,
        || {
            let fresh = Resolver::new(server, timeout).unwrap();
            rt.block_on(verify(&signed, &fresh));
        },
    );
    let settings = Settings {
        authenticate: true,
        dns_resolver: Some(dns.addr()),
        auth_serv_id: Some("mx.example.org".into()),
        arc_key: Some(keys().arc_rsa.clone()),
        arc_selector: Some("arc1".into()),
        arc_domain: Some("veil.test".into()),
        ..Settings::default()
    };
    let auth = Authenticator::from_settings(&settings).unwrap().unwrap();
    let verdict = rt.block_on(auth.verify(&signed));
    let cleaned = clean(&signed, &envelope, &policy, &rules).bytes;
    let seal = per_mail("Authentication-Results + ARC seal (RSA-2048 x2)", N, || {
        auth.finish(&signed, &verdict, &cleaned);
    });
    println!(
        "added per mail: {:.3} ms cached, {:.3} ms uncached (clean() alone: {:.3} ms)",
        (warm + seal).as_secs_f64() * 1e3,
        (cold + seal).as_secs_f64() * 1e3,
        base.as_secs_f64() * 1e3
    );

    // The pipe filter: one process per mail, so every lookup is uncached.
    let plain = || std::process::Command::new(BIN);
    let off = per_mail("filter binary, authentication off", 20, || {
        pipe(plain().args(["filter", "--no-system-rules"]), &signed);
    });
    let flags = arc_flags();
    let on = per_mail("filter binary, --authenticate and --arc-key", 20, || {
        pipe(
            &mut filter_cmd(&dns, &flags.iter().map(String::as_str).collect::<Vec<_>>()),
            &signed,
        );
    });
    println!(
        "filter: {:.3} ms added per mail",
        (on.saturating_sub(off)).as_secs_f64() * 1e3
    );
}
