//! The DNS resolver the verification uses: hickory (through mail-auth), pointed at one
//! server or at the system's, with a timeout and hickory's answer cache (TTL-bound, so a
//! key asked for by one mail is not asked for again by the next while it is valid).

use mail_auth::MessageAuthenticator;
use mail_auth::hickory_resolver::config::{
    ConnectionConfig, NameServerConfig, ResolverConfig, ResolverOpts,
};
use std::net::SocketAddr;
use std::time::Duration;

/// Answers kept in the cache at most.
const CACHE_ENTRIES: u64 = 4096;

/// A resolver for DKIM and ARC keys. Cheap to clone; clones share the cache.
#[derive(Clone)]
pub struct Resolver {
    pub(crate) inner: MessageAuthenticator,
    /// The most a mail waits for all its lookups together.
    pub(crate) timeout: Duration,
}

impl Resolver {
    /// A resolver asking `server` (UDP, then TCP for long answers), or the servers of
    /// /etc/resolv.conf when `None`. One attempt per lookup, `timeout` at most for all the
    /// lookups of one mail (the caller bounds the whole verification by it).
    pub fn new(server: Option<SocketAddr>, timeout: Duration) -> Result<Resolver, String> {
        let (config, mut opts) = match server {
            Some(addr) => {
                let conn = |mut c: ConnectionConfig| {
                    c.port = addr.port();
                    c
                };
                let ns = NameServerConfig::new(
                    addr.ip(),
                    true,
                    vec![conn(ConnectionConfig::udp()), conn(ConnectionConfig::tcp())],
                );
                (
                    ResolverConfig::from_name_servers(vec![ns]),
                    ResolverOpts::default(),
                )
            }
            None => mail_auth::hickory_resolver::system_conf::read_system_conf()
                .map_err(|e| format!("cannot read the system's DNS configuration: {e}"))?,
        };
        opts.timeout = timeout;
        opts.attempts = 1;
        opts.cache_size = CACHE_ENTRIES;
        // Names are absolute (the library asks for `s._domainkey.d.`): never searched.
        opts.ndots = 0;
        let inner = MessageAuthenticator::new(config, opts)
            .map_err(|e| format!("cannot set up the DNS resolver: {e}"))?;
        Ok(Resolver { inner, timeout })
    }
}

/// Reads `IP:PORT` (or `IP`, port 53; IPv6 as `[::1]:53` or bare `::1`).
pub fn parse_server(text: &str) -> Result<SocketAddr, String> {
    let text = text.trim();
    if let Ok(addr) = text.parse::<SocketAddr>() {
        return Ok(addr);
    }
    text.parse::<std::net::IpAddr>()
        .map(|ip| SocketAddr::new(ip, 53))
        .map_err(|_| format!("DNS resolver {text:?}: expected IP:PORT or IP"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolver_addresses() {
        assert_eq!(
            parse_server("127.0.0.1:5353").unwrap(),
            "127.0.0.1:5353".parse().unwrap()
        );
        assert_eq!(
            parse_server("192.0.2.1").unwrap(),
            "192.0.2.1:53".parse().unwrap()
        );
        assert_eq!(parse_server("::1").unwrap(), "[::1]:53".parse().unwrap());
        assert!(parse_server("resolver.example:53").is_err());
    }
}
