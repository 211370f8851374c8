//! The `mailveil` command as scripts call it: `filter` on stdin/stdout with its exit
//! codes and JSON report, `rules check`, `rules stats`, `rules explain`, the shell
//! completions and the man pages.

use std::io::Write;
use std::process::{Command, Output, Stdio};

const BIN: &str = env!("CARGO_BIN_EXE_mailveil");
const FIXTURE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/newsletter.eml");

fn run(args: &[&str], stdin: &[u8]) -> Output {
    let mut child = Command::new(BIN)
        .args(args)
        .arg("--no-system-rules")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = child.stdin.take().unwrap();
    let data = stdin.to_vec();
    let writer = std::thread::spawn(move || {
        let _ = input.write_all(&data);
    });
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap();
    out
}

fn rules_cmd(args: &[&str]) -> Output {
    Command::new(BIN).arg("rules").args(args).output().unwrap()
}

#[test]
fn filter_cleans_the_fixture_and_writes_the_json_report() {
    let dir = tempfile::tempdir().unwrap();
    let report = dir.path().join("report.json");
    let raw = std::fs::read(FIXTURE).unwrap();
    let out = run(
        &[
            "filter",
            "--recipient",
            "you@example.org",
            "--report-json",
            report.to_str().unwrap(),
        ],
        &raw,
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mail = String::from_utf8(out.stdout).unwrap();
    assert!(mail.starts_with("X-Mailveil: v="));
    assert!(!mail.contains("track/open.php"));
    assert!(mail.ends_with("--_----------=_MCPart_2081534766--\r\n"));
    let json: serde_json::Value = serde_json::from_slice(&std::fs::read(&report).unwrap()).unwrap();
    let findings = json["findings"].as_array().unwrap();
    let pixels: Vec<&str> = findings
        .iter()
        .filter(|f| f["kind"] == "pixel")
        .filter_map(|f| f["tracker"].as_str())
        .collect();
    assert!(pixels.contains(&"Mailchimp"), "{pixels:?}");
    assert!(findings.iter().any(|f| {
        f["kind"] == "tracking-param"
            && f["params"]
                .as_array()
                .unwrap()
                .iter()
                .any(|p| p == "mc_eid")
    }));
    assert!(
        findings
            .iter()
            .all(|f| f["rule"].is_string() && f["action"].is_string() && f["part"].is_string())
    );
}

#[test]
fn filter_under_strip_leaves_no_remote_image() {
    let raw = std::fs::read(FIXTURE).unwrap();
    let out = run(&["filter", "--remote-content", "strip"], &raw);
    assert!(out.status.success());
    let mail = String::from_utf8(out.stdout).unwrap();
    assert!(!mail.contains("cdn.gardenletter.example/img/tomatoes.jpg"));
    assert!(mail.contains("Tomatoes under glass"), "alt text kept");
}

#[test]
fn a_mail_that_cannot_be_cleaned_is_delivered_as_an_attachment_with_an_error_header_and_exit_0() {
    let raw = std::fs::read(FIXTURE).unwrap();
    let out = run(&["filter", "--max-time", "0"], &raw);
    assert!(out.status.success());
    let header = format!(
        "X-Mailveil: v={}; error=time-limit\r\n",
        env!("CARGO_PKG_VERSION")
    );
    assert!(out.stdout.starts_with(header.as_bytes()));
    // The original, byte for byte, as an attachment no client renders (issue 14).
    let msg = mail_parser::MessageParser::default()
        .parse(&out.stdout)
        .unwrap();
    let attachment = msg.attachments().next().expect("the original attached");
    assert_eq!(attachment.contents(), &raw[..]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("time-limit"));
}

#[test]
fn a_mistyped_on_error_is_a_usage_error_not_pass() {
    // Until issue 16 `filter` read any value but "tempfail" as "pass": a typo meant the
    // mail went on wrapped where the user asked for a temporary failure.
    let raw = std::fs::read(FIXTURE).unwrap();
    let out = run(
        &["filter", "--on-error", "tempfial", "--max-time", "0"],
        &raw,
    );
    assert_eq!(out.status.code(), Some(2), "a usage error");
    assert!(out.stdout.is_empty());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("tempfial") && stderr.contains("tempfail"),
        "{stderr}"
    );
    // The same key in a configuration file: exit 75, the mail stays with the MDA.
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("mailveil.toml");
    std::fs::write(&config, "on_error = \"tempfial\"\n").unwrap();
    let out = run(&["filter", "--config", config.to_str().unwrap()], &raw);
    assert_eq!(out.status.code(), Some(75));
    assert!(out.stdout.is_empty());
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown variant"));
}

#[test]
fn tempfail_policy_exits_75_for_a_mail_that_cannot_be_cleaned() {
    let raw = std::fs::read(FIXTURE).unwrap();
    let out = run(
        &["filter", "--on-error", "tempfail", "--max-time", "0"],
        &raw,
    );
    assert_eq!(out.status.code(), Some(75));
    assert!(
        out.stdout.is_empty(),
        "nothing written when the MDA is told to retry"
    );
}

#[test]
fn empty_input_still_gives_a_mail() {
    let out = run(&["filter"], b"");
    assert!(out.status.success());
    assert!(out.stdout.starts_with(b"X-Mailveil: v="));
}

const GOOD_RULE: &str = "[[tracker]]\nid = \"acme\"\nname = \"ACME\"\ncategory = \"esp\"\nsource = \"test\"\n\n[[pixel]]\nid = \"acme-open\"\ntracker = \"acme\"\nhost = \"t.acme.example\"\nsource = \"test\"\n";
const TYPO_RULE: &str =
    "[[pixel]]\nid = \"x-open\"\ntracker = \"acme\"\nhots = \"t.x.example\"\nsource = \"test\"\n";

/// A broken rule file refuses the set at start as it does at reload (docs/rules.md): the
/// filter writes no mail and exits 75 (the delivery agent keeps the mail), `serve` does
/// not start, `--check` says which file and line; nothing runs without the user's rule.
#[test]
fn a_broken_user_rule_file_refuses_the_start_and_loses_no_mail() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("good.toml"), GOOD_RULE).unwrap();
    std::fs::write(dir.path().join("typo.toml"), TYPO_RULE).unwrap();
    let d = dir.path().to_str().unwrap();
    let check = rules_cmd(&["check", d]);
    assert_eq!(check.status.code(), Some(1));
    let report = String::from_utf8(check.stdout).unwrap();
    assert!(report.contains("typo.toml:"), "{report}");
    assert!(report.contains("hots"), "{report}");
    let mail = b"From: a@b.example\r\nTo: r@example.org\r\nContent-Type: text/html\r\n\r\n<p>x</p><img src=\"https://t.acme.example/o/1\" alt=\"\">\r\n";
    let out = run(&["filter", "--rules", d], mail);
    assert_eq!(out.status.code(), Some(75), "{out:?}");
    assert!(
        out.stdout.is_empty(),
        "a mail was written without the user's rules"
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("typo.toml"));
    // serve: no start, the file named
    let serve = Command::new(BIN)
        .args(["serve", "--no-system-rules", "--listen", "127.0.0.1:0"])
        .args(["--downstream", "smtp://127.0.0.1:9", "--rules", d])
        .output()
        .unwrap();
    assert_eq!(serve.status.code(), Some(1));
    let said = String::from_utf8_lossy(&serve.stderr);
    assert!(
        said.contains("typo.toml") && said.contains("hots"),
        "{said}"
    );
    // and --check says so before any start
    let check = Command::new(BIN)
        .args([
            "serve",
            "--check",
            "--no-system-rules",
            "--listen",
            "127.0.0.1:1",
        ])
        .args(["--downstream", "smtp://127.0.0.1:9", "--rules", d])
        .output()
        .unwrap();
    assert_eq!(check.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&check.stderr).contains("typo.toml"));
    // fixed: the mail flows, the user's rule applied
    std::fs::remove_file(dir.path().join("typo.toml")).unwrap();
    let out = run(&["filter", "--rules", d], mail);
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("trackers=ACME"), "{text}");
}

/// `rules check` with no directory checks what `serve` would load: the shipped rules,
/// the system directory and the configuration's `rules`; it counts what loads.
#[test]
fn rules_check_without_a_directory_checks_what_serve_would_load() {
    let dir = tempfile::tempdir().unwrap();
    let rules = dir.path().join("rules.d");
    std::fs::create_dir(&rules).unwrap();
    std::fs::write(rules.join("typo.toml"), TYPO_RULE).unwrap();
    let config = dir.path().join("mailveil.toml");
    std::fs::write(
        &config,
        format!("rules = [\"{}\"]\nsystem_rules = false\n", rules.display()),
    )
    .unwrap();
    let c = config.to_str().unwrap();
    let out = rules_cmd(&["check", "--config", c]);
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.contains("typo.toml:") && text.contains("hots"),
        "{text}"
    );
    std::fs::write(rules.join("typo.toml"), GOOD_RULE).unwrap();
    let shipped = String::from_utf8(rules_cmd(&["check", "--no-system-rules"]).stdout).unwrap();
    let out = rules_cmd(&["check", "--config", c]);
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    let trackers = |t: &str| -> usize {
        let (before, _) = t.split_once(" trackers,").unwrap_or_else(|| panic!("{t}"));
        before.rsplit(' ').next().unwrap().parse().unwrap()
    };
    assert!(text.contains(&rules.display().to_string()), "{text}");
    assert_eq!(trackers(&text), trackers(&shipped) + 1, "{text}\n{shipped}");
}

/// `--check` finds what would fail at start, names it, and lists every problem.
#[test]
fn check_names_what_would_fail_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let key = dir.path().join("proxy.key");
    std::fs::write(&key, "6d61696c7665696c2074657374206b6579\n").unwrap();
    let check = |sub: &str, extra: &[&str]| {
        let mut cmd = Command::new(BIN);
        cmd.args([sub, "--check", "--no-system-rules"]);
        if sub == "serve" {
            cmd.args([
                "--listen",
                "127.0.0.1:1",
                "--downstream",
                "smtp://127.0.0.1:9",
            ]);
        }
        let out = cmd.args(extra).output().unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    // fine: the counts per kind
    let (code, out, err) = check("serve", &[]);
    assert_eq!(code, Some(0), "{err}");
    assert!(
        out.contains("ok: rules from shipped: ") && out.contains(" pixel patterns, "),
        "{out}"
    );
    // the report store: a PostgreSQL server that does not answer (a closed loopback
    // port), named without its password; an SQLite file in a directory that is not one
    let pg = format!("postgres://mailveil:s3cret@127.0.0.1:{port}/reports");
    for sub in ["serve", "milter", "filter"] {
        let (code, _, err) = check(sub, &["--report-db", &pg]);
        assert_eq!(code, Some(1), "{sub}: {err}");
        assert!(
            err.contains(&format!(
                "report store postgres://mailveil:***@127.0.0.1:{port}/reports: not reachable"
            )),
            "{sub}: {err}"
        );
        assert!(!err.contains("s3cret"), "{err}");
    }
    let file = dir.path().join("a-file");
    std::fs::write(&file, "").unwrap();
    let db = file.join("reports.sqlite");
    let (code, _, err) = check("serve", &["--report-db", db.to_str().unwrap()]);
    assert_eq!(code, Some(1));
    assert!(
        err.contains(&format!("report store {}", db.display())),
        "{err}"
    );
    // the proxy's key, its cache directory
    let proxy = |key: &str, cache: &str| {
        check(
            "serve",
            &[
                "--proxy-listen",
                "127.0.0.1:1",
                "--proxy-base",
                "http://127.0.0.1:1",
                "--proxy-key-file",
                key,
                "--proxy-cache-dir",
                cache,
            ],
        )
    };
    let (code, _, err) = proxy("/nonexistent/proxy.key", dir.path().to_str().unwrap());
    assert_eq!(code, Some(1));
    assert!(
        err.contains("cannot read key file /nonexistent/proxy.key"),
        "{err}"
    );
    let cache = file.join("cache");
    let (code, _, err) = proxy(key.to_str().unwrap(), cache.to_str().unwrap());
    assert_eq!(code, Some(1));
    assert!(
        err.contains(&format!("cache directory {}", cache.display())),
        "{err}"
    );
    let good = dir.path().join("cache");
    let (code, out, err) = proxy(key.to_str().unwrap(), good.to_str().unwrap());
    assert_eq!(code, Some(0), "{err}");
    assert!(
        out.contains(&format!("ok: proxy cache {} writable", good.display())),
        "{out}"
    );
    assert!(!good.exists(), "--check created the cache directory");
    // two problems at once: both listed
    let (code, _, err) = check(
        "milter",
        &[
            "--report-db",
            db.to_str().unwrap(),
            "--rules",
            "/nonexistent/rules",
        ],
    );
    assert_eq!(code, Some(1));
    assert!(
        err.contains("/nonexistent/rules") && err.contains("report store"),
        "{err}"
    );
}

/// Runs the command on `stdin` with a deadline: `None` if it did not finish in 20 s
/// (it is killed then). Its output must fit the pipe buffers.
fn run_within_20s(cmd: &mut Command, stdin: &[u8]) -> Option<Output> {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(stdin).unwrap();
    let started = std::time::Instant::now();
    while child.try_wait().unwrap().is_none() {
        if started.elapsed() > std::time::Duration::from_secs(20) {
            let _ = child.kill();
            let _ = child.wait();
            return None;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    Some(child.wait_with_output().unwrap())
}

#[test]
fn a_fifo_in_a_rule_directory_neither_hangs_the_start_nor_loses_the_mail() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("good.toml"), "[[tracker]]\nid = \"acme\"\nname = \"ACME\"\ncategory = \"esp\"\nsource = \"test\"\n\n[[pixel]]\nid = \"acme-open\"\ntracker = \"acme\"\nhost = \"t.acme.example\"\nsource = \"test\"\n").unwrap();
    let fifo = dir.path().join("pipe.toml");
    let made = Command::new("mkfifo").arg(&fifo).status().unwrap();
    assert!(made.success());
    let d = dir.path().to_str().unwrap();
    let check = run_within_20s(Command::new(BIN).args(["rules", "check", d]), b"")
        .expect("rules check hung on a FIFO");
    assert_eq!(check.status.code(), Some(1));
    let report = String::from_utf8(check.stdout).unwrap();
    assert!(
        report.contains("pipe.toml") && report.contains("a FIFO, not a regular file"),
        "{report}"
    );
    let mail = b"From: a@b.example\r\nContent-Type: text/html\r\n\r\n<p>x</p><img src=\"https://t.acme.example/o/1\" alt=\"\">\r\n";
    let out = run_within_20s(
        Command::new(BIN).args(["filter", "--no-system-rules", "--rules", d]),
        mail,
    )
    .expect("filter hung on a FIFO in --rules");
    // refused as any broken rule file (exit 75: the delivery agent keeps the mail)
    assert_eq!(out.status.code(), Some(75));
    assert!(String::from_utf8_lossy(&out.stderr).contains("pipe.toml"));
}

/// Whether `text` holds a character that acts on a terminal: C0 controls other than the
/// line break, DEL, C1 controls, bidi overrides and isolates.
fn acts_on_a_terminal(text: &str) -> Option<char> {
    text.chars().find(|&c| {
        (c < ' ' && c != '\n')
            || ('\u{7f}'..='\u{9f}').contains(&c)
            || ('\u{202a}'..='\u{202e}').contains(&c)
            || ('\u{2066}'..='\u{2069}').contains(&c)
    })
}

#[test]
fn report_prints_no_control_character_and_no_csv_formula_from_a_mail() {
    let dir = tempfile::tempdir().unwrap();
    let rules = dir.path().join("rules");
    std::fs::create_dir(&rules).unwrap();
    std::fs::write(rules.join("acme.toml"), "[[tracker]]\nid = \"acme\"\nname = \"ACME\"\ncategory = \"esp\"\nsource = \"test\"\n\n[[pixel]]\nid = \"acme-open\"\ntracker = \"acme\"\nhost = \"t.acme.example\"\nsource = \"test\"\n").unwrap();
    let db = dir.path().join("reports.sqlite");
    // a sender's choice: escape sequences (set the window title, clear the screen), a
    // bidi override, and a Message-ID a spreadsheet would run
    let id = "=HYPERLINK(\"http://x.example\")\x1b[2J\u{202e}abc@evil.example";
    let mail = format!(
        "Return-Path: <=cmd@\x1b]0;owned\x07evil.example>\r\nFrom: x@\x1b[31mevil.example\r\n\
         Message-ID: <{id}>\r\nContent-Type: text/html\r\n\r\n\
         <p>x</p><img src=\"https://t.acme.example/o/1\x1b[31m\u{9b}2J\" alt=\"\">\r\n"
    );
    let out = run(
        &[
            "filter",
            "--rules",
            rules.to_str().unwrap(),
            "--report-db",
            db.to_str().unwrap(),
            "--report-debug",
        ],
        mail.as_bytes(),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let db = db.to_str().unwrap();
    let mut outputs = Vec::new();
    for format in ["table", "csv", "json"] {
        for by_id in [false, true] {
            let mut args = vec!["report", "--report-db", db, "--format", format];
            if by_id {
                args.extend(["--message-id", id]);
            }
            let out = Command::new(BIN).args(&args).output().unwrap();
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            let text = String::from_utf8(out.stdout).unwrap();
            assert_eq!(acts_on_a_terminal(&text), None, "{format}:\n{text}");
            outputs.push((format, by_id, text));
        }
    }
    let get = |f: &str, by_id: bool| {
        outputs
            .iter()
            .find(|(format, id, _)| *format == f && *id == by_id)
            .map(|(_, _, t)| t.as_str())
            .unwrap()
    };
    // what was there is still told, escaped (senders are grouped by the From: domain)
    assert!(get("table", false).contains("\\x1b[31mevil.example"));
    assert!(get("table", true).contains("\\x1b[2J\\u{202e}abc@evil.example"));
    // no cell starts a formula: the Message-ID cell is text
    let csv = get("csv", true);
    let row = csv.lines().nth(1).unwrap();
    assert!(
        row.starts_with("\"'=HYPERLINK(\"\"http://x.example\"\")"),
        "{csv}"
    );
    // JSON keeps the value (escaped as JSON)
    let json: serde_json::Value = serde_json::from_str(get("json", true)).unwrap();
    assert_eq!(json[0]["message_id"], id);
}

/// A mail of about `size` bytes: an HTML newsletter whose first line is a tracking
/// pixel, then lines of text.
fn big_mail(size: usize) -> Vec<u8> {
    let mut mail = b"From: news@sender.example\r\nTo: reader@example.org\r\nSubject: big\r\n\
        Disposition-Notification-To: news@sender.example\r\n\
        MIME-Version: 1.0\r\nContent-Type: text/html\r\n\r\n\
        <p>Hi</p><img src=\"https://t.example/o.gif?e=reader@example.org\" width=1 height=1>\r\n"
        .to_vec();
    let line = b"<p>Lines of a long mail, nothing to clean in them at all......</p>\r\n";
    while mail.len() < size {
        mail.extend_from_slice(line);
    }
    mail
}

/// Runs `mailveil filter ARGS` on `big_mail(size)`; returns the exit code, the bytes
/// written out and the process's peak resident memory in KiB (from wait4). The mail is
/// made after the spawn: the peak of a child counts what its parent held when it forked.
fn filter_peak_rss(args: &[&str], size: usize) -> (Option<i32>, Vec<u8>, i64) {
    // reaped below with wait4, which also gives its peak memory
    #[allow(clippy::zombie_processes)]
    let mut child = Command::new(BIN)
        .arg("filter")
        .arg("--no-system-rules")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let writer = std::thread::spawn(move || {
        for chunk in big_mail(size).chunks(1 << 16) {
            if stdin.write_all(chunk).is_err() {
                return;
            }
        }
    });
    let reader = std::thread::spawn(move || {
        let mut out = Vec::new();
        std::io::Read::read_to_end(&mut stdout, &mut out).unwrap();
        out
    });
    let mut status = 0;
    // SAFETY: an all-zero rusage is valid; wait4 fills it for our own child.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let pid = child.id() as libc::pid_t;
    // SAFETY: waits for the child spawned above; status and usage are valid pointers.
    let reaped = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    assert_eq!(reaped, pid);
    writer.join().unwrap();
    let out = reader.join().unwrap();
    let code = libc::WIFEXITED(status).then(|| libc::WEXITSTATUS(status));
    (code, out, usage.ru_maxrss)
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// The original inside the wrapper of a mail too large to read: the base64 between the
/// attachment's header and the closing delimiter, decoded (no MIME parser: the mail is
/// tens of MB and this is a debug build).
fn wrapped_original(out: &[u8]) -> Vec<u8> {
    use base64::Engine;
    let marker = b"X-Mailveil-Original: error=too-large\r\n\r\n";
    let at = find(out, marker).expect("the attachment") + marker.len();
    let closing = b"\r\n--mailveil-original-0--\r\n";
    assert!(out.ends_with(closing), "the wrapper is closed at the end");
    let lines: Vec<u8> = out[at..out.len() - closing.len()]
        .iter()
        .copied()
        .filter(|&b| b != b'\r' && b != b'\n')
        .collect();
    base64::engine::general_purpose::STANDARD
        .decode(lines)
        .expect("base64 in lines")
}

#[test]
fn a_mail_over_the_limit_is_wrapped_as_it_streams_holding_at_most_the_limit() {
    // 48 MB through a filter whose limit is 16 MB: not read, but nothing in it reaches
    // out (it passed unchanged, pixel and all); the original comes back byte for byte
    // from the attachment, and the filter never holds more than the limit of it
    let limit = 16_000_000;
    let (code, out, small) = filter_peak_rss(&["--max-message-bytes", "1000"], 100_000);
    assert_eq!(code, Some(0));
    let msg = mail_parser::MessageParser::default().parse(&out).unwrap();
    let text = String::from_utf8_lossy(&out);
    assert!(!text.contains("t.example"), "{}", &text[..2000]);
    assert_eq!(msg.parts.len(), 3, "a note and the original");
    assert_eq!(
        msg.attachments().next().unwrap().contents(),
        big_mail(100_000)
    );
    let (code, out, peak) = filter_peak_rss(
        &[
            "--max-message-bytes",
            &limit.to_string(),
            "--strip-read-receipts",
        ],
        48_000_000,
    );
    assert_eq!(code, Some(0));
    let head = String::from_utf8_lossy(&out[..1500]);
    assert!(
        head.starts_with(&format!(
            "X-Mailveil: v={}; error=too-large\r\nFrom: news@sender.example\r\n",
            env!("CARGO_PKG_VERSION")
        )),
        "{head}"
    );
    assert!(head.contains("Content-Type: multipart/mixed;"), "{head}");
    assert!(!head.contains("text/html"), "{head}");
    assert!(!head.contains("Disposition-Notification-To"), "{head}");
    assert!(
        find(&out, b"t.example").is_none(),
        "a live tracker in the output"
    );
    assert!(
        wrapped_original(&out) == big_mail(48_000_000),
        "the original is not attached whole"
    );
    eprintln!("filter, 48 MB over a 16 MB limit: peak RSS {peak} KiB (a small mail: {small} KiB)");
    assert!(
        peak < small + (limit as i64 / 1024) * 5 / 4,
        "peak RSS {peak} KiB for a limit of {limit} bytes (a small mail: {small} KiB)"
    );
}

#[test]
fn a_mail_over_the_limit_under_tempfail_exits_75_and_writes_nothing() {
    let (code, out, _) = filter_peak_rss(
        &["--max-message-bytes", "1000", "--on-error", "tempfail"],
        100_000,
    );
    assert_eq!(code, Some(75));
    assert!(out.is_empty());
}

#[test]
fn rules_check_gives_the_line_of_the_error() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("bad.toml"),
        "# comment\n[[tracker]]\nid = \"ok\"\nname = \"OK\"\ncategory = \"nope\"\nsource = \"s\"\n",
    )
    .unwrap();
    let out = rules_cmd(&["check", dir.path().to_str().unwrap()]);
    let report = String::from_utf8(out.stdout).unwrap();
    assert!(report.contains("bad.toml:5:"), "{report}");
}

#[test]
fn shipped_rules_check_clean_and_stats_count_them() {
    let check = rules_cmd(&["check"]);
    assert!(
        check.status.success(),
        "{}",
        String::from_utf8_lossy(&check.stdout)
    );
    let stats = String::from_utf8(rules_cmd(&["stats"]).stdout).unwrap();
    let count = |label: &str| -> usize {
        stats
            .lines()
            .find(|l| l.starts_with(label))
            .and_then(|l| l.split('\t').nth(1))
            .and_then(|n| n.trim().parse().ok())
            .unwrap_or(0)
    };
    assert!(count("trackers") >= 60, "{stats}");
    assert!(count("pixel patterns") >= 60, "{stats}");
    assert!(count("redirect formats") >= 20, "{stats}");
}

#[test]
fn rules_explain_names_the_rule_file_and_line() {
    let out = rules_cmd(&[
        "explain",
        "https://us3.list-manage.com/track/open.php?u=1&e=2",
    ]);
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("as an image: an open-tracking pixel of Mailchimp, by mailchimp-open (shipped:mailchimp.toml:"), "{text}");
    let out = rules_cmd(&[
        "explain",
        "--recipient",
        "you@example.org",
        "https://shop.example/x?em=you%40example.org&k=1",
    ]);
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.contains("removed parameter em, by heuristic:recipient-token"),
        "{text}"
    );
    assert!(
        text.contains("link becomes: https://shop.example/x?k=1"),
        "{text}"
    );
}

#[test]
fn completions_load_in_their_shell() {
    for shell in ["bash", "zsh", "fish", "elvish", "powershell"] {
        let out = Command::new(BIN)
            .args(["completions", shell])
            .output()
            .unwrap();
        assert!(out.status.success(), "{shell}: {out:?}");
        let script = String::from_utf8(out.stdout).unwrap();
        assert!(
            script.contains("serve") && script.contains("--remote-content"),
            "{shell}: {script}"
        );
    }
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("mailveil.bash");
    let out = Command::new(BIN)
        .args(["completions", "bash"])
        .output()
        .unwrap();
    std::fs::write(&file, out.stdout).unwrap();
    let loaded = Command::new("bash")
        .arg("-c")
        .arg(format!("source {}; complete -p mailveil", file.display()))
        .output()
        .unwrap();
    assert!(loaded.status.success(), "{loaded:?}");
    assert!(String::from_utf8_lossy(&loaded.stdout).contains("-F _mailveil mailveil"));
    let unknown = Command::new(BIN)
        .args(["completions", "cmd.exe"])
        .output()
        .unwrap();
    assert_eq!(unknown.status.code(), Some(2), "{unknown:?}");
}

/// clap_complete panics when its writer fails: a reader that went away (`| head`) must
/// get a clear error and exit 1, not a panic and a backtrace.
#[test]
fn completions_to_a_closed_pipe_fail_without_a_panic() {
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    let out = Command::new(BIN)
        .args(["completions", "bash"])
        .stdout(writer)
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("writing the bash completions"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}

/// One page per visible subcommand, nested ones included, generated from the same
/// definitions as `--help`; `man -l` renders them (when man-db is installed).
#[test]
fn man_pages_cover_every_subcommand_and_render() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(BIN)
        .args(["man", "--dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let mut pages: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    pages.sort();
    for page in [
        "mailveil.1",
        "mailveil-filter.1",
        "mailveil-serve.1",
        "mailveil-milter.1",
        "mailveil-imap.1",
        "mailveil-proxy.1",
        "mailveil-report.1",
        "mailveil-dashboard.1",
        "mailveil-rules.1",
        "mailveil-rules-check.1",
        "mailveil-arc-key.1",
        "mailveil-completions.1",
    ] {
        assert!(pages.iter().any(|p| p == page), "{page} missing: {pages:?}");
    }
    assert!(
        !pages.iter().any(|p| p.starts_with("mailveil-man")),
        "{pages:?}"
    );
    let serve = std::fs::read_to_string(dir.path().join("mailveil-serve.1")).unwrap();
    assert!(serve.contains("\\-\\-downstream"), "{serve}");
    if Command::new("man").arg("--version").output().is_err() {
        eprintln!("SKIP rendering: man is not installed");
        return;
    }
    let rendered = Command::new("man")
        .arg("-l")
        .arg(dir.path().join("mailveil.1"))
        .env("MANPAGER", "cat")
        .env("MANWIDTH", "100")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&rendered.stdout);
    assert!(rendered.status.success(), "{rendered:?}");
    assert!(text.contains("SUBCOMMANDS"), "{text}");
    assert!(text.contains("mailveil-serve(1)"), "{text}");
}
