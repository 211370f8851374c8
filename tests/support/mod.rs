//! What the integration tests share, one copy of each: free ports and waiting
//! ([`net`]), an SMTP sink, a line client and a sender ([`smtp`]), `mailveil` processes
//! killed when dropped ([`launch`]), the fake ESP that counts hits ([`esp`]), and mails
//! to send ([`mail`]). A test file takes it with `mod support;`. The mail stack (a
//! private Postfix and Dovecot) is `tests/mailstack/harness.rs`; the browser harness is
//! `tests/browser/support.rs`.
#![allow(dead_code, unused_imports)]

pub mod esp;
pub mod launch;
pub mod mail;
pub mod net;
pub mod smtp;

pub use esp::{ESP_RULES, Esp, Hit, PNG};
pub use launch::{Daemon, MAILVEIL};
pub use net::{free_port, wait_port, wait_until};
pub use smtp::{Client, Sink, send};
