//! Rule files: any text must compile or be refused with an error, never panic; a rule
//! set that compiles must match URLs without panicking.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mailveil_core::{RuleSource, Rules};

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data).into_owned();
    let sources = [RuleSource {
        name: "fuzz.toml".into(),
        text: text.into(),
    }];
    let (lenient, _) = Rules::compile_lenient(&sources);
    if let Ok(rules) = Rules::compile(&sources) {
        for (host, path) in [
            ("email.mg.example", "/c/eJxLyw"),
            ("www.google.com", "/url?q=https%3A%2F%2Fa.example%2F"),
            ("a.b.c.example", "/o/x.gif?u=1"),
            ("", ""),
        ] {
            let _ = rules.match_pixel(host, path);
            let _ = rules.match_redirect(host, path);
            let _ = rules.match_params(host, "utm_source").count();
        }
        let _ = rules.stats();
    }
    let _ = lenient.stats();
});
