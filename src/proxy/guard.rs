//! Which URLs and addresses the proxy may fetch (docs/architecture.md, invariant 6). Pure: no I/O.
//!
//! The same predicate runs on the URL before any request (IP literals in every form the
//! URL parser knows: `http://2130706433/`, `0x7f.1`, `0177.0.0.1` all become 127.0.0.1),
//! on every address DNS returns (the resolver drops forbidden ones, so the address
//! connected to is one that was checked), and again on every redirect hop.

use ipnet::IpNet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use url::{Host, Url};

/// Why a URL is not fetched. The text is generic: it goes into logs, never to a sender.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Not http or https.
    Scheme,
    /// A user name or password in the URL.
    Credentials,
    /// No host, or one that cannot be parsed.
    Host,
    /// An address (literal or resolved) in a forbidden range.
    Address,
    /// A tracker by the loaded rules.
    Tracker,
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Refusal::Scheme => "scheme not allowed",
            Refusal::Credentials => "credentials in URL",
            Refusal::Host => "bad host",
            Refusal::Address => "address not allowed",
            Refusal::Tracker => "a tracker",
        })
    }
}

/// The address policy: public unicast only, plus the networks the operator allows.
#[derive(Debug, Clone, Default)]
pub struct Guard {
    /// `--allow-net`: networks let through although they are not public.
    pub allow: Vec<IpNet>,
}

impl Guard {
    /// Whether the proxy may connect to `ip`.
    pub fn permits(&self, ip: IpAddr) -> bool {
        if self.allow.iter().any(|n| n.contains(&ip)) {
            return true;
        }
        !is_forbidden(ip)
    }

    /// Checks a URL before a request: scheme, credentials and IP-literal hosts. A host
    /// name is checked after DNS, by the resolver.
    pub fn check_url(&self, url: &Url) -> Result<(), Refusal> {
        if !matches!(url.scheme(), "http" | "https") {
            return Err(Refusal::Scheme);
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(Refusal::Credentials);
        }
        match url.host() {
            None => Err(Refusal::Host),
            Some(Host::Ipv4(v4)) => self.address(IpAddr::V4(v4)),
            Some(Host::Ipv6(v6)) => self.address(IpAddr::V6(v6)),
            Some(Host::Domain(d)) => {
                // The URL parser turns numeric IPv4 forms into Host::Ipv4; anything
                // numeric left here is malformed.
                if d.is_empty() || d.parse::<IpAddr>().is_ok() {
                    return Err(Refusal::Host);
                }
                Ok(())
            }
        }
    }

    fn address(&self, ip: IpAddr) -> Result<(), Refusal> {
        if self.permits(ip) {
            Ok(())
        } else {
            Err(Refusal::Address)
        }
    }
}

/// Whether an address is anything but public unicast: loopback, private, link-local
/// (with the cloud metadata address), CGNAT, multicast, broadcast, documentation,
/// benchmarking, reserved, `0.0.0.0/8`, and IPv6 forms that embed IPv4 (mapped,
/// compatible, NAT64, 6to4, Teredo) or are local (ULA, link-local, site-local).
pub fn is_forbidden(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => forbidden_v4(v4),
        IpAddr::V6(v6) => forbidden_v6(v6),
    }
}

fn forbidden_v4(ip: Ipv4Addr) -> bool {
    let [a, b, c, _] = ip.octets();
    a == 0 // 0.0.0.0/8 "this network"
        || a == 10
        || a == 127
        || (a == 100 && (64..128).contains(&b)) // CGNAT 100.64.0.0/10
        || (a == 169 && b == 254) // link-local, 169.254.169.254 metadata
        || (a == 172 && (16..32).contains(&b))
        || (a == 192 && b == 168)
        || (a == 192 && b == 0 && c == 0) // IETF protocol assignments
        || (a == 192 && b == 0 && c == 2) // TEST-NET-1
        || (a == 198 && (b == 18 || b == 19)) // benchmarking
        || (a == 198 && b == 51 && c == 100) // TEST-NET-2
        || (a == 203 && b == 0 && c == 113) // TEST-NET-3
        || (a == 192 && b == 88 && c == 99) // 6to4 relay anycast
        || a >= 224 // multicast 224/4, reserved 240/4, broadcast
}

fn forbidden_v6(ip: Ipv6Addr) -> bool {
    let s = ip.segments();
    ip.is_unspecified()
        || ip.is_loopback()
        || s[0] & 0xff00 == 0xff00 // multicast
        || s[0] & 0xfe00 == 0xfc00 // unique local fc00::/7 (fd00:ec2::254 metadata)
        || s[0] & 0xffc0 == 0xfe80 // link-local
        || s[0] & 0xffc0 == 0xfec0 // site-local (deprecated)
        || (s[0] == 0x2001 && s[1] == 0x0db8) // documentation
        || (s[0] == 0x2001 && s[1] == 0) // Teredo embeds IPv4
        || s[0] == 0x2002 // 6to4 embeds IPv4
        || (s[0] == 0x0064 && s[1] == 0xff9b) // NAT64 64:ff9b::/96 and /48
        || (s[0] == 0x0100 && s[1] == 0 && s[2] == 0 && s[3] == 0) // discard 100::/64
        || s[..5].iter().all(|&x| x == 0) && (s[5] == 0xffff || s[5] == 0) // mapped, compatible
        || (s[..4].iter().all(|&x| x == 0) && s[4] == 0xffff && s[5] == 0) // translated ::ffff:0:a.b.c.d
}

#[cfg(test)]
mod tests {
    use super::*;

    fn guard() -> Guard {
        Guard::default()
    }

    fn refused(url: &str) -> bool {
        let u = Url::parse(url).expect(url);
        guard().check_url(&u).is_err()
    }

    #[test]
    fn refuses_loopback_in_every_literal_form() {
        for u in [
            "http://127.0.0.1/",
            "http://127.1/",
            "http://2130706433/",
            "http://0x7f000001/",
            "http://0x7f.0.0.1/",
            "http://0177.0.0.1/",
            "http://017700000001/",
            "http://[::1]/",
            "http://[::ffff:127.0.0.1]/",
            "http://[::ffff:7f00:1]/",
            "http://[::127.0.0.1]/",
        ] {
            assert!(refused(u), "{u}");
        }
    }

    #[test]
    fn refuses_169_254_metadata() {
        assert!(refused("http://169.254.169.254/latest/meta-data/"));
        assert!(refused("http://[fd00:ec2::254]/"));
        assert!(refused("http://2852039166/"));
    }

    #[test]
    fn refuses_private_cgnat_multicast_and_this_network() {
        for u in [
            "http://10.0.0.1/",
            "http://172.16.5.4/",
            "http://172.31.255.255/",
            "http://192.168.1.1/",
            "http://100.64.0.1/",
            "http://100.127.255.254/",
            "http://224.0.0.1/",
            "http://239.255.255.250/",
            "http://255.255.255.255/",
            "http://0.0.0.0/",
            "http://0/",
            "http://[fe80::1]/",
            "http://[fc00::1]/",
            "http://[ff02::1]/",
            "http://[64:ff9b::a00:1]/",
            "http://[2002:7f00:1::]/",
            "http://[::]/",
        ] {
            assert!(refused(u), "{u}");
        }
    }

    #[test]
    fn refuses_other_schemes_and_credentials() {
        for u in [
            "file:///etc/passwd",
            "ftp://cdn.example/a.png",
            "gopher://cdn.example/",
            "data:image/png;base64,AAAA",
            "http://user:pw@cdn.example/a.png",
            "http://user@cdn.example/a.png",
        ] {
            assert!(refused(u), "{u}");
        }
    }

    #[test]
    fn lets_public_addresses_and_names_through() {
        for u in [
            "http://93.184.215.14/a.png",
            "https://cdn.example/a.png",
            "http://[2606:2800:21f:cb07:6820:80da:af6b:8b2c]/",
            "http://100.128.0.1/",
            "http://172.32.0.1/",
        ] {
            assert!(!refused(u), "{u}");
        }
    }

    #[test]
    fn allow_net_lets_exactly_that_network_through() {
        let g = Guard {
            allow: vec!["127.0.0.0/8".parse().unwrap()],
        };
        assert!(g.permits("127.0.0.1".parse().unwrap()));
        assert!(!g.permits("10.0.0.1".parse().unwrap()));
        assert!(!g.permits("169.254.169.254".parse().unwrap()));
        assert!(!g.permits("::1".parse().unwrap()));
    }
}
