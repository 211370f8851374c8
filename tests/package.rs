//! The Debian package as a user gets it. `bash contrib/deb/build.sh` builds it (here from
//! the test build, stripped by cargo-deb as the release profile strips what ships: a
//! release build would add minutes to every run; the release profile's own settings are
//! checked apart), then it is listed (`dpkg-deb -c`), its control files
//! read, and it is extracted into a temporary root, where: the binary is stripped, the
//! shipped configuration passes `serve --check`, `systemd-analyze verify` passes on the
//! units, `man -l` renders the man pages, and the bash completion loads.
//!
//! With `MAILVEIL_PACKAGE_INSTALL=1` (CI, a throwaway root machine) it is also installed
//! into this machine with `dpkg -i` (twice: the maintainer scripts are idempotent), checked
//! there (the `mailveil` user, `systemd-analyze verify`, `serve --check` as that user,
//! `man mailveil`) and purged again (state gone, user kept).
//!
//! Skips when cargo-deb or dpkg-deb is missing, unless `MAILVEIL_REQUIRE_PACKAGE=1` (CI).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Instant;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

/// What the package must hold, as `dpkg-deb -c` lists it.
const EXPECTED: &[&str] = &[
    "./usr/bin/mailveil",
    "./etc/mailveil/mailveil.toml",
    "./etc/mailveil/rules.d/README",
    "./usr/lib/systemd/system/mailveil.service",
    "./usr/lib/systemd/system/mailveil-milter.service",
    "./usr/share/man/man1/mailveil.1.gz",
    "./usr/share/man/man1/mailveil-filter.1.gz",
    "./usr/share/man/man1/mailveil-serve.1.gz",
    "./usr/share/man/man1/mailveil-milter.1.gz",
    "./usr/share/man/man1/mailveil-imap.1.gz",
    "./usr/share/man/man1/mailveil-proxy.1.gz",
    "./usr/share/man/man1/mailveil-report.1.gz",
    "./usr/share/man/man1/mailveil-rules-check.1.gz",
    "./usr/share/man/man1/mailveil-completions.1.gz",
    "./usr/share/bash-completion/completions/mailveil",
    "./usr/share/zsh/vendor-completions/_mailveil",
    "./usr/share/fish/vendor_completions.d/mailveil.fish",
    "./usr/share/doc/mailveil/copyright",
    "./usr/share/doc/mailveil/README.md",
    "./usr/share/doc/mailveil/docs/postfix.md",
];

const UNITS: &[&str] = &["mailveil.service", "mailveil-milter.service"];

fn require() -> bool {
    std::env::var("MAILVEIL_REQUIRE_PACKAGE").as_deref() == Ok("1")
}

/// Whether `program args` runs at all.
fn runs(program: &str, args: &[&str]) -> bool {
    Command::new(program)
        .args(args)
        .output()
        .is_ok_and(|o| o.status.success())
}

fn run(cmd: &mut Command) -> Output {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?}: {}\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn stdout(cmd: &mut Command) -> String {
    String::from_utf8_lossy(&run(cmd).stdout).into_owned()
}

#[test]
fn the_debian_package_installs_what_a_mail_server_needs() {
    let missing: Vec<&str> = [
        ("cargo-deb", runs("cargo", &["deb", "--version"])),
        ("dpkg-deb", runs("dpkg-deb", &["--version"])),
        ("systemd-analyze", runs("systemd-analyze", &["--version"])),
        ("man", runs("man", &["--version"])),
        ("readelf", runs("readelf", &["--version"])),
    ]
    .into_iter()
    .filter(|(_, ok)| !ok)
    .map(|(name, _)| name)
    .collect();
    if !missing.is_empty() {
        let msg = format!(
            "SKIP: {missing:?} not installed (cargo install cargo-deb --locked; bash .ci/setup)"
        );
        assert!(!require(), "{msg}, and MAILVEIL_REQUIRE_PACKAGE=1");
        eprintln!("{msg}");
        return;
    }

    let out_dir = tempfile::tempdir().unwrap();
    let started = Instant::now();
    // The test build, packaged and stripped as the release one is: this checks the
    // package's layout and install, and a release build would add minutes to every run.
    run(Command::new("bash")
        .arg(Path::new(ROOT).join("contrib/deb/build.sh"))
        .env("MAILVEIL_DEB_PROFILE", "dev")
        .args(["--fast", "--strip", "-o"])
        .arg(out_dir.path()));
    eprintln!("package built in {:?}", started.elapsed());
    let deb = std::fs::read_dir(out_dir.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|x| x == "deb"))
        .expect("a .deb in the output directory");

    check_contents(&deb);
    let root = tempfile::tempdir().unwrap();
    run(Command::new("dpkg-deb")
        .arg("-x")
        .arg(&deb)
        .arg(root.path()));
    check_extracted(root.path());

    if std::env::var("MAILVEIL_PACKAGE_INSTALL").as_deref() == Ok("1") {
        install_check_and_purge(&deb);
    } else {
        eprintln!("not installed into this machine: set MAILVEIL_PACKAGE_INSTALL=1 (CI does)");
    }
}

/// The file list and the control files.
fn check_contents(deb: &Path) {
    let listing = stdout(Command::new("dpkg-deb").arg("-c").arg(deb));
    eprintln!("{listing}");
    let paths: Vec<&str> = listing
        .lines()
        .filter_map(|l| l.split_whitespace().nth(5))
        .collect();
    for want in EXPECTED {
        assert!(
            paths.contains(want),
            "{want} missing from the package:\n{listing}"
        );
    }
    let conffiles = stdout(Command::new("dpkg-deb").arg("-I").arg(deb).arg("conffiles"));
    assert!(
        conffiles
            .lines()
            .any(|l| l == "/etc/mailveil/mailveil.toml"),
        "{conffiles}"
    );
    let postinst = stdout(Command::new("dpkg-deb").arg("-I").arg(deb).arg("postinst"));
    assert!(postinst.contains("useradd --system"), "{postinst}");
    let postrm = stdout(Command::new("dpkg-deb").arg("-I").arg(deb).arg("postrm"));
    assert!(
        postrm.contains("rm -rf /var/lib/mailveil /var/cache/mailveil"),
        "{postrm}"
    );
    let fields = stdout(Command::new("dpkg-deb").arg("-f").arg(deb));
    eprintln!("{fields}");
    assert!(fields.contains("Package: mailveil"), "{fields}");
}

/// The package's files, from a temporary root.
fn check_extracted(root: &Path) {
    let bin = root.join("usr/bin/mailveil");
    let size = std::fs::metadata(&bin).unwrap().len();
    eprintln!("/usr/bin/mailveil: {size} bytes");
    let sections = stdout(Command::new("readelf").arg("-S").arg("-W").arg(&bin));
    assert!(
        !sections.contains(".debug_info") && !sections.contains(".symtab"),
        "the packaged binary is not stripped:\n{sections}"
    );

    let config = root.join("etc/mailveil/mailveil.toml");
    assert_eq!(
        std::fs::read(&config).unwrap(),
        std::fs::read(Path::new(ROOT).join("contrib/mailveil.toml")).unwrap(),
        "the conffile is contrib/mailveil.toml"
    );
    let check = stdout(
        Command::new(&bin)
            .args(["serve", "--check", "--config"])
            .arg(&config),
    );
    assert!(check.contains("ok:"), "{check}");

    // The units as systemd reads them, against this machine's systemd (its targets,
    // /bin/kill), their binary and the man pages they name taken from the extracted
    // root: the path of the binary is the one thing changed (`--root` would look for
    // every unit and command in the extracted root). The installed units, unchanged,
    // are verified under MAILVEIL_PACKAGE_INSTALL=1.
    let units = tempfile::tempdir().unwrap();
    let mut copies = Vec::new();
    for unit in UNITS {
        let text = std::fs::read_to_string(root.join("usr/lib/systemd/system").join(unit))
            .unwrap()
            .replace("/usr/bin/mailveil", bin.to_str().unwrap());
        let copy = units.path().join(unit);
        std::fs::write(&copy, text).unwrap();
        copies.push(copy);
    }
    let verify = run(Command::new("systemd-analyze")
        .arg("verify")
        .args(&copies)
        .env("MANPATH", root.join("usr/share/man")));
    assert_verified(&verify);

    let rendered = stdout(
        Command::new("man")
            .arg("-l")
            .arg(root.join("usr/share/man/man1/mailveil.1.gz"))
            .env("MANPAGER", "cat")
            .env("MANWIDTH", "100"),
    );
    assert!(rendered.contains("mailveil-serve(1)"), "{rendered}");
    let serve = stdout(
        Command::new("man")
            .arg("-l")
            .arg(root.join("usr/share/man/man1/mailveil-serve.1.gz"))
            .env("MANPAGER", "cat"),
    );
    assert!(serve.contains("--downstream"), "{serve}");

    check_completions(&root.join("usr/share"));
}

fn check_completions(share: &Path) {
    let bash = share.join("bash-completion/completions/mailveil");
    let loaded = stdout(Command::new("bash").arg("-c").arg(format!(
        "source '{}' && complete -p mailveil",
        bash.display()
    )));
    assert!(loaded.contains("-F _mailveil mailveil"), "{loaded}");
    let zsh = std::fs::read_to_string(share.join("zsh/vendor-completions/_mailveil")).unwrap();
    assert!(zsh.starts_with("#compdef mailveil"), "{zsh}");
    let fish =
        std::fs::read_to_string(share.join("fish/vendor_completions.d/mailveil.fish")).unwrap();
    assert!(fish.contains("complete -c mailveil"), "{fish}");
}

/// `systemd-analyze verify` exits 0 on warnings too: nothing may be said about our units.
fn assert_verified(out: &Output) {
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let ours: Vec<&str> = said.lines().filter(|l| l.contains("mailveil")).collect();
    assert!(ours.is_empty(), "systemd-analyze verify:\n{said}");
}

/// `dpkg -i` into this machine (CI only), twice, the checks of a user who follows the
/// README, then `dpkg --purge`.
fn install_check_and_purge(deb: &Path) {
    let before = Command::new("dpkg-query")
        .args(["-W", "-f", "${Status}", "mailveil"])
        .output()
        .unwrap();
    assert!(
        !String::from_utf8_lossy(&before.stdout).contains("installed"),
        "mailveil is already installed on this machine: not touching it"
    );
    let started = Instant::now();
    run(Command::new("dpkg").arg("-i").arg(deb));
    eprintln!("dpkg -i: {:?}", started.elapsed());
    // A second configure (a reinstall) finds the user and changes nothing.
    run(Command::new("dpkg").arg("-i").arg(deb));
    let user = stdout(Command::new("getent").args(["passwd", "mailveil"]));
    assert_eq!(user.lines().count(), 1, "{user}");
    assert!(
        user.trim_end().ends_with(":/nonexistent:/usr/sbin/nologin"),
        "{user}"
    );

    let units: Vec<PathBuf> = UNITS
        .iter()
        .map(|u| Path::new("/usr/lib/systemd/system").join(u))
        .collect();
    let verify = run(Command::new("systemd-analyze").arg("verify").args(&units));
    assert_verified(&verify);

    // As the unit runs it: the mailveil user reads the shipped configuration.
    let check = stdout(Command::new("runuser").args([
        "-u",
        "mailveil",
        "--",
        "/usr/bin/mailveil",
        "serve",
        "--check",
        "--config",
        "/etc/mailveil/mailveil.toml",
    ]));
    assert!(check.contains("ok:"), "{check}");
    let man = stdout(Command::new("man").arg("mailveil").env("MANPAGER", "cat"));
    assert!(man.contains("mailveil-serve(1)"), "{man}");
    let loaded = stdout(
        Command::new("bash")
            .arg("-c")
            .arg("source /usr/share/bash-completion/completions/mailveil && complete -p mailveil"),
    );
    assert!(loaded.contains("_mailveil"), "{loaded}");

    std::fs::create_dir_all("/var/lib/mailveil").unwrap();
    std::fs::write("/var/lib/mailveil/reports.sqlite", b"state").unwrap();
    run(Command::new("dpkg").args(["--purge", "mailveil"]));
    for gone in ["/usr/bin/mailveil", "/etc/mailveil", "/var/lib/mailveil"] {
        assert!(
            !Path::new(gone).exists(),
            "{gone} is still there after purge"
        );
    }
    // The user stays (files it owns may remain elsewhere; a reused uid would get them).
    run(Command::new("getent").args(["passwd", "mailveil"]));
}

/// What ships is built `release`: without debug info, stripped (156 MB with `debug = 1`,
/// 23 MB so).
#[test]
fn the_release_profile_ships_no_debug_info() {
    let manifest: toml::Table = std::fs::read_to_string(Path::new(ROOT).join("Cargo.toml"))
        .unwrap()
        .parse()
        .unwrap();
    let release = &manifest["profile"]["release"];
    assert_eq!(release.get("debug"), Some(&toml::Value::Boolean(false)));
    assert_eq!(release.get("strip"), Some(&toml::Value::Boolean(true)));
}
