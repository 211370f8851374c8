//! The IMAP side of the sweep (async-imap over TCP or rustls): connect, log in, and the
//! few commands the sweep needs, with UIDs throughout.

use super::plan;
use async_imap::imap_proto::rfc4315::UidSetMember;
use async_imap::imap_proto::{Response, ResponseCode};
use async_imap::{Client, Session};
use futures_util::TryStreamExt;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};

/// Any stream the session runs over (plain TCP for loopback tests, or TLS).
pub trait Io: AsyncRead + AsyncWrite + Unpin + Send + std::fmt::Debug {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send + std::fmt::Debug> Io for T {}

/// A logged-in session.
pub type Imap = Session<Box<dyn Io>>;

/// Connect timeout and the time one command may take.
pub const TIMEOUT: Duration = Duration::from_secs(60);

fn err(what: &str) -> impl Fn(async_imap::error::Error) -> String + '_ {
    move |e| format!("{what}: {e}")
}

/// Connects (TLS with the webpki roots for `imaps://`) and logs in. The password goes
/// to the server only; errors never contain it.
pub async fn connect(server: &str, user: &str, password: &str) -> Result<Imap, String> {
    let (tls, host, port) = plan::parse_server(server)?;
    let tcp = tokio::time::timeout(
        TIMEOUT,
        tokio::net::TcpStream::connect((host.as_str(), port)),
    )
    .await
    .map_err(|_| format!("connect {host}:{port}: timeout"))?
    .map_err(|e| format!("connect {host}:{port}: {e}"))?;
    let _ = tcp.set_nodelay(true);
    let stream: Box<dyn Io> = if tls {
        let mut roots = rustls::RootCertStore::empty();
        roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| format!("TLS: {e}"))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        let name = rustls_pki_types::ServerName::try_from(host.clone())
            .map_err(|e| format!("TLS server name {host}: {e}"))?;
        let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
        let tls = tokio::time::timeout(TIMEOUT, connector.connect(name, tcp))
            .await
            .map_err(|_| format!("TLS handshake with {host}: timeout"))?
            .map_err(|e| format!("TLS handshake with {host}: {e}"))?;
        Box::new(tls)
    } else {
        Box::new(tcp)
    };
    let mut client = Client::new(stream);
    let greeting = tokio::time::timeout(TIMEOUT, client.read_response())
        .await
        .map_err(|_| "no greeting from the server".to_string())?
        .map_err(|e| format!("greeting: {e}"))?;
    if greeting.is_none() {
        return Err("the server closed the connection before its greeting".into());
    }
    match tokio::time::timeout(TIMEOUT, client.login(user, password)).await {
        Err(_) => Err("login: timeout".into()),
        Ok(Ok(s)) => Ok(s),
        // The error from a failed login is the server's text; the password is not in it.
        Ok(Err((e, _))) => Err(format!("login as {user} failed: {e}")),
    }
}

/// Drops the unsolicited responses async-imap queues (a bounded channel that would
/// otherwise fill up during a long sweep).
pub fn drain(session: &mut Imap) {
    while session.unsolicited_responses.try_recv().is_ok() {}
}

/// One fetched message.
pub struct Fetched {
    pub raw: Vec<u8>,
    pub flags: Vec<String>,
    /// The INTERNALDATE as an IMAP date-time string.
    pub internal_date: Option<String>,
}

fn flag_name(f: &async_imap::types::Flag<'_>) -> String {
    use async_imap::types::Flag;
    match f {
        Flag::Seen => "\\Seen".into(),
        Flag::Answered => "\\Answered".into(),
        Flag::Flagged => "\\Flagged".into(),
        Flag::Deleted => "\\Deleted".into(),
        Flag::Draft => "\\Draft".into(),
        Flag::Recent => "\\Recent".into(),
        Flag::MayCreate => "\\*".into(),
        Flag::Custom(c) => c.to_string(),
    }
}

/// Fetches one message by UID without setting `\Seen` (BODY.PEEK[]); `None` if it is
/// gone (expunged by someone else meanwhile).
pub async fn fetch(session: &mut Imap, uid: u32) -> Result<Option<Fetched>, String> {
    let fetches: Vec<_> = session
        .uid_fetch(uid.to_string(), "(UID FLAGS INTERNALDATE BODY.PEEK[])")
        .await
        .map_err(err("UID FETCH"))?
        .try_collect()
        .await
        .map_err(err("UID FETCH"))?;
    drain(session);
    let Some(f) = fetches.iter().find(|f| f.uid == Some(uid)) else {
        return Ok(None);
    };
    let Some(body) = f.body() else {
        return Ok(None);
    };
    Ok(Some(Fetched {
        raw: body.to_vec(),
        flags: f.flags().map(|f| flag_name(&f)).collect(),
        internal_date: f
            .internal_date()
            .map(|d| d.format("%d-%b-%Y %H:%M:%S %z").to_string()),
    }))
}

/// UIDs matching a search.
pub async fn uid_search(session: &mut Imap, query: &str) -> Result<Vec<u32>, String> {
    let set = session.uid_search(query).await.map_err(err("UID SEARCH"))?;
    drain(session);
    let mut v: Vec<u32> = set.into_iter().collect();
    v.sort_unstable();
    Ok(v)
}

/// APPENDs `content` with the flags and internal date; returns the new UID when the
/// server says it (UIDPLUS `APPENDUID`). Returns only after the server's tagged OK.
pub async fn append(
    session: &mut Imap,
    folder: &str,
    flags: &str,
    internal_date: Option<&str>,
    content: &[u8],
) -> Result<Option<u32>, String> {
    // async-imap's append() drops the response code, so the command is run by hand.
    let date = internal_date
        .map(|d| format!(" \"{d}\""))
        .unwrap_or_default();
    let id = session
        .run_command(format!(
            "APPEND {} {flags}{date} {{{}}}",
            plan::quote(folder),
            content.len()
        ))
        .await
        .map_err(err("APPEND"))?;
    loop {
        let resp = session
            .read_response()
            .await
            .map_err(|e| format!("APPEND: {e}"))?
            .ok_or("APPEND: connection closed")?;
        match resp.parsed() {
            Response::Continue(_) => break,
            Response::Done {
                tag,
                status,
                outcome,
            } if *tag == id => {
                return Err(format!(
                    "APPEND refused: {status:?} {}",
                    outcome.information.as_deref().unwrap_or("")
                ));
            }
            _ => {}
        }
    }
    {
        let w = session.get_mut();
        w.write_all(content)
            .await
            .map_err(|e| format!("APPEND: {e}"))?;
        w.write_all(b"\r\n")
            .await
            .map_err(|e| format!("APPEND: {e}"))?;
        w.flush().await.map_err(|e| format!("APPEND: {e}"))?;
    }
    loop {
        let resp = session
            .read_response()
            .await
            .map_err(|e| format!("APPEND: {e}"))?
            .ok_or("APPEND: connection closed")?;
        if let Response::Done {
            tag,
            status,
            outcome,
        } = resp.parsed()
        {
            if *tag != id {
                continue;
            }
            if *status != async_imap::imap_proto::Status::Ok {
                return Err(format!(
                    "APPEND refused: {status:?} {}",
                    outcome.information.as_deref().unwrap_or("")
                ));
            }
            let uid = match &outcome.code {
                Some(ResponseCode::AppendUid(_, set)) => set.first().map(|m| match m {
                    UidSetMember::Uid(u) => *u,
                    UidSetMember::UidRange(r) => *r.start(),
                }),
                _ => None,
            };
            return Ok(uid);
        }
    }
}

/// Server capabilities the sweep cares about.
#[derive(Debug, Clone, Copy, Default)]
pub struct Caps {
    pub uidplus: bool,
    pub r#move: bool,
}

pub async fn caps(session: &mut Imap) -> Result<Caps, String> {
    let c = session.capabilities().await.map_err(err("CAPABILITY"))?;
    drain(session);
    Ok(Caps {
        uidplus: c.has_str("UIDPLUS"),
        r#move: c.has_str("MOVE"),
    })
}

/// Moves the original away: to `keep` (UID MOVE, or COPY + delete), or deletes it
/// (`\Deleted` + UID EXPUNGE of that UID only). Without UIDPLUS the `\Deleted` flag is
/// set and the expunge left to the user's client (a plain EXPUNGE would also remove
/// other mail the user marked).
pub async fn remove_original(
    session: &mut Imap,
    caps: Caps,
    uid: u32,
    keep: Option<&str>,
) -> Result<(), String> {
    let set = uid.to_string();
    if let Some(keep) = keep {
        if caps.r#move {
            session.uid_mv(&set, keep).await.map_err(err("UID MOVE"))?;
            drain(session);
            return Ok(());
        }
        session
            .uid_copy(&set, keep)
            .await
            .map_err(err("UID COPY"))?;
    }
    let _: Vec<_> = session
        .uid_store(&set, "+FLAGS.SILENT (\\Deleted)")
        .await
        .map_err(err("UID STORE"))?
        .try_collect()
        .await
        .map_err(err("UID STORE"))?;
    if caps.uidplus {
        let _: Vec<_> = session
            .uid_expunge(&set)
            .await
            .map_err(err("UID EXPUNGE"))?
            .try_collect()
            .await
            .map_err(err("UID EXPUNGE"))?;
    }
    drain(session);
    Ok(())
}
