//! The SMTP/LMTP protocol of `mailveil serve` without I/O: what to answer and what to do
//! next, given a command line. The root crate's `smtp::conn` moves the bytes (tokio,
//! TLS, the downstream); everything here is a pure function of its inputs, so the fuzz
//! target `smtp_session` can drive it over arbitrary bytes.
//!
//! - [`session`]: the state machine ([`session::Session`]: a command line in, a
//!   [`session::Step`] out) and the [`session::Reply`] type.
//! - [`path`]: the envelope: RFC 5321 paths and ESMTP parameters, read from MAIL/RCPT
//!   and written again for the downstream.
//! - [`wire`]: dot-stuffing of a message for DATA, and reading it back.
//!
//! ```
//! use mailveil_smtp::session::{Session, Settings, Step};
//!
//! let mut s = Session::new(Settings {
//!     hostname: "mx.example.org".into(),
//!     max_message_bytes: 1 << 20,
//!     tls_available: false,
//!     xforward: false,
//! });
//! assert_eq!(s.greeting().to_wire(), b"220 mx.example.org ESMTP mailveil\r\n");
//! // No DATA before a greeting, MAIL and RCPT.
//! assert!(matches!(s.command(b"DATA\r\n"), Step::Reply(r) if r.code == 503));
//! assert_eq!(s.command(b"EHLO client.example\r\n"), Step::Hello);
//! ```
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod path;
pub mod session;
pub mod wire;
