//! mailveil: a privacy filter for incoming mail. The cleaning core lives in
//! `mailveil-core` and is re-exported here; this crate adds what touches the outside
//! world: the settings, the pipeline around the core, the frontends (pipe, SMTP/LMTP,
//! milter, IMAP), the rule files, the image proxy, the report store and the dashboard.
//! docs/architecture.md draws the whole.
//!
//! Crate-private by default: what is public is what the binary, the tests and the
//! benches use.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub use mailveil_core::*;

pub(crate) mod allow_list;
pub mod app;
pub mod auth;
pub(crate) mod check;
pub mod cli;
pub(crate) mod cli_docs;
pub(crate) mod explain;
pub(crate) mod filter;
pub mod http;
pub(crate) mod imap;
pub(crate) mod import;
pub(crate) mod logs;
pub(crate) mod metrics;
pub(crate) mod milter;
pub(crate) mod pipeline;
pub(crate) mod printable;
pub mod proxy;
pub(crate) mod reload;
pub(crate) mod report_cmd;
pub mod rule_files;
pub(crate) mod settings;
pub(crate) mod smtp;
pub mod store;
pub(crate) mod web;
