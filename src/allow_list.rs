//! Which client networks may connect to a listener (`serve`'s `allowed_networks` and
//! `--allow`, the milter's `--allow`): CIDR lists, checked before a connection is served.

use ipnet::IpNet;
use std::net::IpAddr;

/// The networks allowed when none are configured: loopback only.
pub const LOOPBACK: [&str; 2] = ["127.0.0.0/8", "::1/128"];

/// A network in CIDR notation, or a single address.
pub fn parse_net(s: &str) -> Result<IpNet, String> {
    s.parse::<IpNet>()
        .or_else(|_| s.parse::<IpAddr>().map(IpNet::from))
        .map_err(|_| format!("allowed network {s:?}: expected CIDR such as 127.0.0.0/8"))
}

/// Parses every entry of `nets`; an empty list means [`LOOPBACK`].
pub fn parse_or_loopback<S: AsRef<str>>(nets: &[S]) -> Result<Vec<IpNet>, String> {
    if nets.is_empty() {
        return LOOPBACK.iter().map(|n| parse_net(n)).collect();
    }
    nets.iter().map(|n| parse_net(n.as_ref())).collect()
}

/// Whether `ip` is in one of `nets`. IPv4-mapped IPv6 addresses count as IPv4.
pub fn allowed(nets: &[IpNet], ip: IpAddr) -> bool {
    let ip = match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    };
    nets.iter().any(|n| n.contains(&ip))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_by_default_and_mapped_addresses_count_as_ipv4() {
        let nets = parse_or_loopback::<&str>(&[]).unwrap();
        assert!(allowed(&nets, "127.0.0.1".parse().unwrap()));
        assert!(allowed(&nets, "::1".parse().unwrap()));
        assert!(allowed(&nets, "::ffff:127.0.0.5".parse().unwrap()));
        assert!(!allowed(&nets, "192.168.1.1".parse().unwrap()));
        let nets = parse_or_loopback(&["10.1.0.0/16", "192.0.2.7"]).unwrap();
        assert!(allowed(&nets, "::ffff:10.1.2.3".parse().unwrap()));
        assert!(allowed(&nets, "192.0.2.7".parse().unwrap()));
        assert!(!allowed(&nets, "127.0.0.1".parse().unwrap()));
        assert!(parse_or_loopback(&["10.0.0.0/33"]).is_err());
        assert!(parse_or_loopback(&["localhost"]).is_err());
    }
}
