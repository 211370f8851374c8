//! Prints the mail a `clean_mime` input stands for, its shape and policy flags:
//! `cargo run --example show_mime -- seeds/clean_mime/FILE`.

use arbitrary::{Arbitrary, Unstructured};
use mailveil_fuzz::mime::Mail;

fn main() {
    for path in std::env::args().skip(1) {
        let data = std::fs::read(&path).expect("read the input");
        let Ok(mail) = Mail::arbitrary_take_rest(Unstructured::new(&data)) else {
            println!("== {path}: not a Mail");
            continue;
        };
        println!(
            "== {path}: flags {:#04x}, shape {:?}",
            mail.flags,
            mail.shape()
        );
        println!("{}", String::from_utf8_lossy(&mail.to_bytes()));
    }
}
