use super::args::{AuthArgs, CommonArgs, ListenerArgs, OnErrorSetting};
use super::file::FileConfig;
use super::frontends::{self, ImapArgs, MilterArgs, ServeArgs};
use super::*;
use crate::cli::Cli;
use clap::Parser;
use ipnet::IpNet;

fn toml(text: &str) -> FileConfig {
    toml::from_str(text).unwrap()
}

/// The settings and serve's own section, from a file and serve's flags.
fn serve_from(
    file: &FileConfig,
    flags: &[&str],
) -> Result<(Settings, crate::smtp::ServeConfig), String> {
    let args = serve_args(flags);
    let s = Settings::build(
        Mode::Serve,
        file,
        &args.common,
        Some(&args.listeners),
        Some(&args.auth),
    )?;
    let c = frontends::serve(file, &args, s.max_message_bytes)?;
    Ok((s, c))
}

fn serve_args(flags: &[&str]) -> ServeArgs {
    let mut argv = vec!["mailveil", "serve", "--listen", "127.0.0.1:10025"];
    argv.extend_from_slice(&["--downstream", "smtp://127.0.0.1:10026"]);
    argv.extend_from_slice(flags);
    match Cli::try_parse_from(argv).unwrap().command {
        crate::cli::Command::Serve(a) => a,
        _ => unreachable!(),
    }
}

fn allows(c: &crate::smtp::ServeConfig, ip: &str) -> bool {
    crate::allow_list::allowed(&c.allowed_networks, ip.parse().unwrap())
}

#[test]
fn defaults_allow_loopback_only() {
    let (s, c) = serve_from(&FileConfig::default(), &[]).unwrap();
    assert!(allows(&c, "127.0.0.1"));
    assert!(allows(&c, "::1"));
    assert!(allows(&c, "::ffff:127.0.0.5"));
    assert!(!allows(&c, "192.168.1.1"));
    assert!(!allows(&c, "10.0.0.1"));
    assert_eq!(s.policy.on_error, OnError::PassUnchanged);
}

#[test]
fn file_keys_and_unknown_keys() {
    let f = toml(
        r#"
        listen = "127.0.0.1:10025"
        downstream = "lmtp://127.0.0.1:24"
        allowed_networks = ["127.0.0.2/32", "10.1.2.3"]
        on_error = "tempfail"
        remote_content = "strip"
        signed = "keep"
        [tls]
        cert = "/etc/ssl/c.pem"
        key = "/etc/ssl/k.pem"
        "#,
    );
    let args = match Cli::try_parse_from(["mailveil", "serve"]).unwrap().command {
        crate::cli::Command::Serve(a) => a,
        _ => unreachable!(),
    };
    let s = Settings::build(Mode::Serve, &f, &args.common, None, None).unwrap();
    let c = frontends::serve(&f, &args, s.max_message_bytes).unwrap();
    assert!(allows(&c, "10.1.2.3"));
    assert!(!allows(&c, "127.0.0.1"));
    assert_eq!(s.policy.on_error, OnError::Tempfail);
    assert_eq!(s.policy.remote_content, RemoteContent::Strip);
    assert_eq!(s.policy.signed, Some(SignedContent::Keep));
    assert!(c.tls.is_some());
    assert!(toml::from_str::<FileConfig>("listne = \"x\"").is_err());
    // on_error is one type: a value it does not know is an error in the file...
    assert!(toml::from_str::<FileConfig>("on_error = \"drop\"").is_err());
    // ... and on the command line of every subcommand (it meant "pass" in filter)
    for sub in ["filter", "serve", "milter", "imap"] {
        assert!(
            Cli::try_parse_from(["mailveil", sub, "--on-error", "tempfial"]).is_err(),
            "{sub}"
        );
    }
}

#[test]
fn limit_keys_reach_the_core_and_slow_client_keys_the_server() {
    let f = toml(
        r#"
        max_depth = 10
        max_parts = 20
        max_part_bytes = 1000
        html_memory_bytes = 2000
        max_findings = 30
        max_unwrap_depth = 2
        max_clean_secs = 3
        max_line_bytes = 1024
        min_data_rate = 100
        http_header_timeout_secs = 4
        http_max_connections = 50
        "#,
    );
    let (s, c) = serve_from(&f, &[]).unwrap();
    let l = &s.policy.limits;
    assert_eq!(
        (
            l.max_depth,
            l.max_parts,
            l.max_part_bytes,
            l.html_memory_bytes
        ),
        (10, 20, 1000, 2000)
    );
    assert_eq!(l.max_findings, 30);
    assert_eq!(l.max_time, Duration::from_secs(3));
    assert_eq!(s.policy.links.max_unwrap_depth, 2);
    assert_eq!((c.max_line_bytes, c.min_data_rate), (1024, 100));
    assert_eq!(s.http.header_timeout, Duration::from_secs(4));
    assert_eq!(s.http.max_connections, 50);
    // The defaults: what docs/limits.md lists.
    let (d, dc) = serve_from(&FileConfig::default(), &[]).unwrap();
    assert_eq!(dc.max_sessions, 1000);
    assert_eq!(dc.max_transfers, 100);
    assert_eq!(dc.max_line_bytes, 4096);
    assert_eq!(dc.min_data_rate, 500);
    assert_eq!(dc.max_message_bytes, 50 << 20);
    assert_eq!(
        d.policy.limits.max_message_bytes,
        Limits::default().max_message_bytes
    );
    assert_eq!(d.policy.limits.max_parts, Limits::default().max_parts);
    assert_eq!(d.http, crate::http::HttpLimits::default());
    for bad in [
        "max_line_bytes = 100",
        "http_max_connections = 0",
        "http_header_timeout_secs = 0",
        "max_clean_secs = 0",
    ] {
        assert!(serve_from(&toml(bad), &[]).is_err(), "{bad}");
    }
    // A flag beats the key: the same limits for every subcommand.
    let (s, _) = serve_from(&f, &["--max-depth", "7", "--max-time", "5"]).unwrap();
    assert_eq!(s.policy.limits.max_depth, 7);
    assert_eq!(s.policy.limits.max_time, Duration::from_secs(5));
}

#[test]
fn proxy_keys_mirror_the_flags_and_make_prefetch_the_default() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("k");
    std::fs::write(&key, "0123456789abcdef0123456789abcdef\n").unwrap();
    let f = toml(&format!(
        r#"
        proxy_listen = "127.0.0.1:8025"
        proxy_base = "https://mail.example.org/mv"
        proxy_key_file = "{}"
        proxy_allow_net = ["192.168.7.0/24"]
        prefetch_deadline_ms = 1500
        shield_links = true
        "#,
        key.display()
    ));
    let (s, _) = serve_from(&f, &[]).unwrap();
    assert_eq!(s.policy.remote_content, RemoteContent::Prefetch);
    let p = s.policy.proxy.as_ref().unwrap();
    assert_eq!(p.base, "https://mail.example.org/mv");
    assert!(p.shield_links);
    assert_eq!(p.key, b"0123456789abcdef0123456789abcdef");
    let setup = s.proxy.unwrap();
    assert_eq!(setup.listen, Some("127.0.0.1:8025".parse().unwrap()));
    assert_eq!(setup.prefetch_deadline, Duration::from_millis(1500));
    assert_eq!(
        setup.settings.allow,
        vec!["192.168.7.0/24".parse::<IpNet>().unwrap()]
    );
    // `--no-shield-links` turns off what the file turns on.
    let (s, _) = serve_from(&f, &["--no-shield-links"]).unwrap();
    assert!(!s.policy.proxy.unwrap().shield_links);
    // Proxying without a proxy, or half a proxy configuration, is an error.
    let empty = FileConfig::default();
    assert!(serve_from(&empty, &["--remote-content", "proxy"]).is_err());
    assert!(serve_from(&empty, &["--proxy-listen", "127.0.0.1:8025"]).is_err());
    assert!(serve_from(&empty, &["--proxy-base", "http://127.0.0.1:8025"]).is_err());
    // A short key is refused.
    std::fs::write(&key, "short").unwrap();
    let k = key.display().to_string();
    let half = [
        "--proxy-base",
        "http://127.0.0.1:8025",
        "--proxy-key-file",
        &k,
    ];
    assert!(serve_from(&empty, &half).is_err());
}

#[test]
fn every_mode_reads_the_same_keys_and_flags() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("k");
    std::fs::write(&key, "0123456789abcdef0123456789abcdef\n").unwrap();
    let f = toml(&format!(
        r#"
        banner = true
        strip_read_receipts = true
        keep_campaign_params = true
        on_error = "tempfail"
        signed = "clean"
        report_db = "/tmp/r.sqlite"
        report_debug = true
        retention_days = 7
        proxy_base = "https://mail.example.org/mv"
        proxy_key_file = "{}"
        remote_content = "proxy"
        max_message_bytes = 1000
        "#,
        key.display()
    ));
    let common = CommonArgs::default();
    for mode in [
        Mode::Filter,
        Mode::Serve,
        Mode::Milter,
        Mode::Imap { watch: false },
    ] {
        let s = Settings::build(mode, &f, &common, None, None).unwrap();
        let p = &s.policy;
        assert!(
            p.banner && p.strip_read_receipts && p.links.keep_campaign_params,
            "{mode:?}"
        );
        assert_eq!(p.on_error, OnError::Tempfail, "{mode:?}");
        assert_eq!(p.signed, Some(SignedContent::Clean));
        assert_eq!(p.remote_content, RemoteContent::Proxy);
        assert!(p.proxy.is_some(), "{mode:?}: URLs signed for the proxy");
        assert_eq!(
            s.reports,
            ReportSettings {
                db: Some("/tmp/r.sqlite".into()),
                retention_days: 7,
                debug: true
            }
        );
        assert_eq!(s.max_message_bytes, 1000);
        // serve refuses larger mail before the core sees it; the others wrap it
        let core = if mode == Mode::Serve { 128 << 20 } else { 1000 };
        assert_eq!(p.limits.max_message_bytes, core, "{mode:?}");
    }
    // The `--no-` twins turn off for one run what the file turns on.
    let off = CommonArgs {
        no_banner: true,
        no_strip_read_receipts: true,
        no_keep_campaign_params: true,
        no_report_debug: true,
        on_error: Some(OnErrorSetting::Pass),
        ..CommonArgs::default()
    };
    let s = Settings::build(Mode::Milter, &f, &off, None, None).unwrap();
    assert!(!s.policy.banner && !s.policy.strip_read_receipts);
    assert!(!s.policy.links.keep_campaign_params && !s.reports.debug);
    assert_eq!(s.policy.on_error, OnError::PassUnchanged);
}

#[test]
fn where_the_modes_differ() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("k");
    std::fs::write(&key, "0123456789abcdef0123456789abcdef\n").unwrap();
    let f = toml(&format!(
        r#"
        proxy_listen = "127.0.0.1:8025"
        proxy_base = "https://mail.example.org/mv"
        proxy_key_file = "{}"
        dashboard_listen = "127.0.0.1:8026"
        authenticate = true
        "#,
        key.display()
    ));
    let common = CommonArgs::default();
    // The long-running modes run the proxy and the dashboard, and prefetch by default.
    for mode in [Mode::Serve, Mode::Milter, Mode::Imap { watch: true }] {
        let s = Settings::build(mode, &f, &common, None, None).unwrap();
        assert!(s.proxy.as_ref().unwrap().listen.is_some(), "{mode:?}");
        assert!(s.dashboard.is_some(), "{mode:?}");
        assert_eq!(s.policy.remote_content, RemoteContent::Prefetch);
    }
    // Those that end with their mail leave the file's listeners to the daemon sharing
    // it, sign for its proxy, and refuse the flags.
    for mode in [Mode::Filter, Mode::Imap { watch: false }] {
        let s = Settings::build(mode, &f, &common, None, None).unwrap();
        assert!(s.proxy.as_ref().unwrap().listen.is_none(), "{mode:?}");
        assert!(s.dashboard.is_none(), "{mode:?}");
        assert_eq!(s.policy.remote_content, RemoteContent::Keep);
        let flags = ListenerArgs {
            dashboard_listen: Some("127.0.0.1:8026".into()),
            ..ListenerArgs::default()
        };
        assert!(Settings::build(mode, &f, &common, Some(&flags), None).is_err());
    }
    // Authentication: on for those that take mail in, never for the IMAP sweep.
    for (mode, on) in [
        (Mode::Filter, true),
        (Mode::Serve, true),
        (Mode::Milter, true),
        (Mode::Imap { watch: true }, false),
    ] {
        let s = Settings::build(mode, &f, &common, None, None).unwrap();
        assert_eq!(s.auth.authenticate, on, "{mode:?}");
    }
    let off = AuthArgs {
        no_authenticate: true,
        ..AuthArgs::default()
    };
    let s = Settings::build(Mode::Milter, &f, &common, None, Some(&off)).unwrap();
    assert!(!s.auth.authenticate);
}

#[test]
fn the_frontends_own_tables() {
    let f = toml(
        r#"
        [milter]
        listen = "unix:/run/mailveil/milter"
        allow = ["10.0.0.0/8"]
        max_connections = 9
        max_spool_bytes = 1000
        idle_timeout_secs = 7
        [imap]
        server = "imaps://imap.example.org"
        user = "alice@example.org"
        password_file = "/etc/mailveil/imap.pass"
        folders = ["INBOX", "News"]
        keep_originals = "Originals"
        "#,
    );
    let args = match Cli::try_parse_from(["mailveil", "milter"]).unwrap().command {
        crate::cli::Command::Milter(a) => a,
        _ => unreachable!(),
    };
    let m = frontends::milter(&f, &args).unwrap();
    assert_eq!(
        m.listen,
        crate::milter::Listen::Unix("/run/mailveil/milter".into())
    );
    assert_eq!(m.max_connections, 9);
    assert_eq!(m.max_spool_bytes, 1000);
    assert_eq!(m.idle_timeout, Duration::from_secs(7));
    assert_eq!(m.frame_timeout, Duration::from_secs(30));
    assert_eq!(m.allow, vec!["10.0.0.0/8".parse::<IpNet>().unwrap()]);
    let flags: MilterArgs =
        match Cli::try_parse_from(["mailveil", "milter", "--max-connections", "3"])
            .unwrap()
            .command
        {
            crate::cli::Command::Milter(a) => a,
            _ => unreachable!(),
        };
    assert_eq!(frontends::milter(&f, &flags).unwrap().max_connections, 3);
    let args: ImapArgs = match Cli::try_parse_from(["mailveil", "imap"]).unwrap().command {
        crate::cli::Command::Imap(a) => a,
        _ => unreachable!(),
    };
    let i = frontends::imap(&f, &args).unwrap();
    assert_eq!(i.server, "imaps://imap.example.org");
    assert_eq!(i.folders, ["INBOX", "News"]);
    assert_eq!(i.keep_originals.as_deref(), Some("Originals"));
    assert!(
        frontends::imap(&FileConfig::default(), &args).is_err(),
        "no server"
    );
    assert!(toml::from_str::<FileConfig>("[milter]\nlisten_on = \"x\"").is_err());
}

#[test]
fn the_shipped_configuration_file_is_read_by_every_mode_and_its_commented_keys_exist() {
    let text = include_str!("../../contrib/mailveil.toml");
    let f: FileConfig = toml::from_str(text).unwrap();
    assert!(serve_from(&f, &[]).is_ok());
    for mode in [Mode::Filter, Mode::Milter, Mode::Imap { watch: true }] {
        assert!(
            Settings::build(mode, &f, &CommonArgs::default(), None, None).is_ok(),
            "{mode:?}"
        );
    }
    // Every key the file shows commented out is one the file may hold.
    let uncommented: String = text
        .lines()
        .map(|l| match l.strip_prefix("# ") {
            Some(rest)
                if rest.starts_with('[')
                    || rest.split_once(" = ").is_some_and(|(k, _)| {
                        k.bytes().all(|b| b.is_ascii_lowercase() || b == b'_')
                    }) =>
            {
                rest
            }
            _ => l,
        })
        .collect::<Vec<_>>()
        .join("\n");
    assert!(uncommented.contains("\n[milter]\n") && uncommented.contains("\nproxy_base = "));
    let all: FileConfig = toml::from_str(&uncommented).unwrap_or_else(|e| panic!("{e}"));
    assert!(all.milter.is_some() && all.imap.is_some() && all.tls.is_some());
}

/// The keys serde reads for a struct (its derived field list), found by asking it to
/// deserialize from a deserializer that only records the list it is handed.
fn keys_of<T: for<'de> serde::Deserialize<'de>>() -> Vec<&'static str> {
    use serde::de::{Error, Visitor};
    struct Names<'a>(&'a mut Vec<&'static str>);
    impl<'de> serde::Deserializer<'de> for Names<'_> {
        type Error = serde::de::value::Error;
        fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Self::Error> {
            Err(Error::custom("not a struct"))
        }
        fn deserialize_struct<V: Visitor<'de>>(
            self,
            _: &'static str,
            fields: &'static [&'static str],
            _: V,
        ) -> Result<V::Value, Self::Error> {
            self.0.extend_from_slice(fields);
            Err(Error::custom("names only"))
        }
        serde::forward_to_deserialize_any! {
            bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes
            byte_buf option unit unit_struct newtype_struct seq tuple tuple_struct map enum
            identifier ignored_any
        }
    }
    let mut names = Vec::new();
    let _ = T::deserialize(Names(&mut names));
    names
}

/// contrib/mailveil.toml with its commented-out keys and tables uncommented.
fn shipped_uncommented() -> String {
    include_str!("../../contrib/mailveil.toml")
        .lines()
        .map(|l| match l.strip_prefix("# ") {
            Some(rest)
                if rest.starts_with('[')
                    || rest.split_once(" = ").is_some_and(|(k, _)| {
                        k.bytes().all(|b| b.is_ascii_lowercase() || b == b'_')
                    }) =>
            {
                rest
            }
            _ => l,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// contrib/mailveil.toml names every key the configuration type reads and no other, each
/// with a line of meaning, flat keys first and tables last (so a key appended at the end
/// of the flat part never lands in a table).
#[test]
fn the_shipped_configuration_file_names_exactly_the_keys_the_type_reads() {
    use std::collections::BTreeSet;
    let text = shipped_uncommented();
    let parsed: toml::Table = toml::from_str(&text).unwrap_or_else(|e| panic!("{e}"));
    let tables = [
        ("tls", keys_of::<super::file::TlsFiles>()),
        ("milter", keys_of::<super::file::MilterFile>()),
        ("imap", keys_of::<super::file::ImapFile>()),
    ];
    // `report_debug` is an alias of `debug`: one name in the file is enough.
    let flat: BTreeSet<&str> = keys_of::<FileConfig>()
        .into_iter()
        .filter(|k| !tables.iter().any(|(t, _)| t == k) && *k != "report_debug")
        .collect();
    assert!(flat.len() > 50 && flat.contains("listen") && flat.contains("log_format"));
    let in_file: BTreeSet<&str> = parsed
        .iter()
        .filter(|(_, v)| !v.is_table())
        .map(|(k, _)| k.as_str())
        .collect();
    assert_eq!(
        flat.difference(&in_file).collect::<Vec<_>>(),
        Vec::<&&str>::new(),
        "keys the type reads that contrib/mailveil.toml does not name"
    );
    assert_eq!(
        in_file.difference(&flat).collect::<Vec<_>>(),
        Vec::<&&str>::new(),
        "keys contrib/mailveil.toml names that the type does not read"
    );
    for (table, keys) in &tables {
        let want: BTreeSet<&str> = keys.iter().copied().collect();
        let got: BTreeSet<&str> = parsed[*table]
            .as_table()
            .unwrap_or_else(|| panic!("no [{table}]"))
            .keys()
            .map(String::as_str)
            .collect();
        assert_eq!(want, got, "[{table}]");
    }
    // tables last, and every key with a line of meaning: a comment at its end, or a
    // comment line (not a commented-out key) right above it or its group
    let lines: Vec<&str> = text.lines().collect();
    let first_table = lines.iter().position(|l| l.starts_with('[')).unwrap();
    let original: Vec<&str> = include_str!("../../contrib/mailveil.toml")
        .lines()
        .collect();
    for (i, line) in lines.iter().enumerate() {
        let Some((key, _)) = line.split_once(" = ").filter(|_| !line.starts_with('#')) else {
            continue;
        };
        if i > first_table {
            continue;
        }
        assert!(
            flat.contains(key),
            "{key}: not a flat key, or after a table"
        );
        let explained = original[i].contains(" # ")
            || original[..i]
                .iter()
                .rev()
                .take_while(|l| !l.is_empty())
                .any(|l| l.starts_with("# ") && !l[2..].contains(" = "));
        assert!(explained, "{key}: no line says what it means");
    }
}

#[test]
fn the_proxy_alone_reads_the_same_keys_and_its_old_flag_names() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("k");
    std::fs::write(&key, "0123456789abcdef0123456789abcdef\n").unwrap();
    let config = dir.path().join("mailveil.toml");
    std::fs::write(
        &config,
        format!(
            "proxy_listen = \"127.0.0.1:8025\"\nproxy_base = \"https://mail.example.org/mv\"\n\
             proxy_key_file = \"{}\"\nhttp_max_connections = 7\nproxy_cache_days = 2\n",
            key.display()
        ),
    )
    .unwrap();
    let proxy_args = |argv: &[&str]| match Cli::try_parse_from(argv).unwrap().command {
        crate::cli::Command::Proxy(a) => a,
        _ => unreachable!(),
    };
    let c = config.display().to_string();
    let (s, _, _, _) =
        super::proxy_alone(&proxy_args(&["mailveil", "proxy", "--config", &c])).unwrap();
    assert_eq!(s.listen, "127.0.0.1:8025".parse().unwrap());
    assert_eq!(s.base, "https://mail.example.org/mv");
    assert_eq!(s.http.max_connections, 7);
    assert_eq!(s.cache_ttl, Duration::from_secs(2 * 86400));
    // the flags of earlier versions still work, and beat the file
    let k = key.display().to_string();
    let argv = [
        "mailveil",
        "proxy",
        "--config",
        &c,
        "--listen",
        "127.0.0.1:9000",
        "--base",
        "http://127.0.0.1:9000",
        "--key-file",
        &k,
        "--allow-net",
        "10.0.0.0/8",
    ];
    let (s, _, _, _) = super::proxy_alone(&proxy_args(&argv)).unwrap();
    assert_eq!(s.listen, "127.0.0.1:9000".parse().unwrap());
    assert_eq!(s.base, "http://127.0.0.1:9000");
    assert_eq!(s.allow, vec!["10.0.0.0/8".parse::<IpNet>().unwrap()]);
    assert!(super::proxy_alone(&proxy_args(&["mailveil", "proxy"])).is_err());
}
