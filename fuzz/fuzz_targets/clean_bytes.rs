//! `clean` on arbitrary bytes. The first byte picks the policy (see `policy`), the rest
//! is the mail. Properties: no internal error (a caught panic), non-empty output that
//! parses when the input did, idempotence.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&flags, mail)) = data.split_first() else {
        return;
    };
    mailveil_fuzz::check_clean(mail, &mailveil_fuzz::policy(flags));
});
