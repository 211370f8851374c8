//! mailveil: a privacy filter for incoming mail. The cleaning core lives in
//! `mailveil-core` and is re-exported here; this crate adds what touches the outside
//! world: loading rule files, and the frontends.

pub use mailveil_core::*;

pub mod allow_list;
pub mod auth;
pub mod explain;
pub mod http;
pub mod imap;
pub mod milter;
pub mod printable;
pub mod proxy;
pub mod reload;
pub mod rule_files;
pub mod smtp;
pub mod store;
pub mod web;
