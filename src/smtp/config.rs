//! What `serve`'s SMTP side runs with (built from the configuration file and the flags
//! by [`crate::settings::frontends::serve`]): the listener, its clients, the downstream,
//! the protocol's bounds. What every frontend shares (the policy, the rules, reports,
//! the proxy) is the pipeline's.

pub(crate) use crate::settings::file::TlsFiles;
use ipnet::IpNet;
use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

/// Concurrent sessions by default. A session is a tokio task and two descriptors, so
/// idle ones are cheap; the cap is what keeps a flood of them from exhausting the file
/// descriptors, and it sits well above Postfix's default of 100 content-filter
/// processes so that idle or slow clients do not lock that traffic out.
pub(crate) const DEFAULT_MAX_SESSIONS: usize = 1000;

/// Where cleaned mail goes: the one server that receives everything this filter accepts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum DownstreamAddr {
    /// `smtp://HOST:PORT`: an SMTP server (Postfix's reinjection smtpd).
    Smtp(SocketAddr),
    /// `lmtp://HOST:PORT`: an LMTP server (Dovecot's LMTP), one reply per recipient.
    LmtpTcp(SocketAddr),
    /// `lmtp:unix:/path`: an LMTP server on a unix socket.
    LmtpUnix(PathBuf),
}

impl DownstreamAddr {
    /// LMTP answers once per recipient after the final dot.
    pub(crate) fn is_lmtp(&self) -> bool {
        !matches!(self, DownstreamAddr::Smtp(_))
    }
}

impl FromStr for DownstreamAddr {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let addr = |rest: &str| {
            rest.trim_end_matches('/')
                .parse::<SocketAddr>()
                .map_err(|_| format!("downstream {s:?}: expected IP:PORT (numeric, no DNS)"))
        };
        if let Some(rest) = s.strip_prefix("smtp://") {
            Ok(DownstreamAddr::Smtp(addr(rest)?))
        } else if let Some(rest) = s.strip_prefix("lmtp://") {
            Ok(DownstreamAddr::LmtpTcp(addr(rest)?))
        } else if let Some(rest) = s.strip_prefix("lmtp:unix:") {
            if rest.is_empty() {
                return Err(format!("downstream {s:?}: empty socket path"));
            }
            Ok(DownstreamAddr::LmtpUnix(PathBuf::from(rest)))
        } else {
            Err(format!(
                "downstream {s:?}: expected smtp://IP:PORT, lmtp://IP:PORT or lmtp:unix:/path"
            ))
        }
    }
}

impl fmt::Display for DownstreamAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DownstreamAddr::Smtp(a) => write!(f, "smtp://{a}"),
            DownstreamAddr::LmtpTcp(a) => write!(f, "lmtp://{a}"),
            DownstreamAddr::LmtpUnix(p) => write!(f, "lmtp:unix:{}", p.display()),
        }
    }
}

/// The validated configuration of the SMTP side.
#[derive(Debug, Clone)]
pub(crate) struct ServeConfig {
    /// Address to listen on.
    pub listen: SocketAddr,
    /// The only server mail is passed to.
    pub downstream: DownstreamAddr,
    /// Our name.
    pub hostname: String,
    /// Who may connect.
    pub allowed_networks: Vec<IpNet>,
    /// Largest message accepted.
    pub max_message_bytes: usize,
    /// Concurrent sessions.
    pub max_sessions: usize,
    /// Mails received at once.
    pub max_transfers: usize,
    /// Longest command line.
    pub max_line_bytes: usize,
    /// Time for a whole command line.
    pub command_timeout: Duration,
    /// Wait for each read of message data.
    pub data_timeout: Duration,
    /// Average bytes per second of message data (0: no floor).
    pub min_data_rate: u64,
    /// Wait for the downstream to connect.
    pub downstream_connect_timeout: Duration,
    /// Wait for each downstream reply.
    pub downstream_timeout: Duration,
    /// Idle downstream connections kept between client sessions (0: none).
    pub downstream_pool: usize,
    /// Time sessions get to finish after SIGTERM.
    pub shutdown_grace: Duration,
    /// Accept and pass on XFORWARD.
    pub xforward: bool,
    /// STARTTLS files, if STARTTLS is offered.
    pub tls: Option<TlsFiles>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn downstream_forms() {
        assert_eq!(
            "smtp://127.0.0.1:10026".parse::<DownstreamAddr>(),
            Ok(DownstreamAddr::Smtp("127.0.0.1:10026".parse().unwrap()))
        );
        assert_eq!(
            "lmtp:unix:/run/dovecot/lmtp".parse::<DownstreamAddr>(),
            Ok(DownstreamAddr::LmtpUnix("/run/dovecot/lmtp".into()))
        );
        assert!(
            "lmtp://[::1]:24"
                .parse::<DownstreamAddr>()
                .unwrap()
                .is_lmtp()
        );
        assert!(
            "smtp://mail.example.org:25"
                .parse::<DownstreamAddr>()
                .is_err()
        );
        assert!("http://127.0.0.1:1".parse::<DownstreamAddr>().is_err());
    }
}
