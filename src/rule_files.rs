//! Rule files on disk, layered: shipped rules (built in) < the system directory
//! (`/etc/mailveil/rules.d`) < directories given with `--rules`. A later entry with the
//! same id replaces an earlier one.
//!
//! A broken file is never half-used, and the rule is the same at start and at reload
//! (docs/rules.md, "A broken rule file"): the set is read and compiled whole, and any
//! error refuses it. At start there is no earlier set, so the process does not start
//! (and says which file and line); at reload the last good set stays. [`load`] (every
//! error, and what compiles) is for the commands that only look at rules.
//!
//! Only regular files of at most [`MAX_FILE_BYTES`] are read. A FIFO would block the
//! reader until someone writes to it (a start or a reload that never ends), a device
//! can be endless (`/dev/zero`) or act on being opened. A symlink is followed when it
//! leads to a regular file, wherever that is: the directory is the operator's, and
//! linking files in from elsewhere (Debian's `*-available` / `*-enabled`) is their call;
//! a link to anything else is refused like the thing itself.

use mailveil_core::{RuleError, RuleSource, RuleText, Rules, rules};
use std::io::Read;
use std::path::{Path, PathBuf};

/// The largest rule file read (the shipped rules are a few KiB each; a whole imported
/// list is well under a MiB).
pub const MAX_FILE_BYTES: u64 = 8 << 20;

mod shipped {
    include!(concat!(env!("OUT_DIR"), "/shipped_rules.rs"));
}

/// The system-wide rules directory, read when it exists.
pub const SYSTEM_DIR: &str = "/etc/mailveil/rules.d";

/// The rule files built into the binary.
pub fn shipped() -> Vec<RuleSource> {
    shipped::SHIPPED
        .iter()
        .map(|(name, text, _)| RuleSource {
            name: format!("shipped:{name}"),
            text: RuleText::Static(text),
        })
        .collect()
}

/// The `*.toml` files of a directory, sorted by name. An unreadable directory or file is
/// an error in the list, not a failure.
pub fn read_dir(dir: &Path) -> (Vec<RuleSource>, Vec<RuleError>) {
    let mut errors = Vec::new();
    let mut paths: Vec<PathBuf> = match std::fs::read_dir(dir) {
        Ok(rd) => rd
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "toml"))
            .collect(),
        Err(e) => {
            errors.push(io_error(dir, &e));
            Vec::new()
        }
    };
    paths.sort();
    let mut sources = Vec::new();
    for p in paths {
        match read_rule_file(&p) {
            Ok(text) => sources.push(RuleSource {
                name: p.display().to_string(),
                text: text.into(),
            }),
            Err(message) => errors.push(RuleError {
                file: p.display().to_string(),
                line: 0,
                column: 0,
                message,
            }),
        }
    }
    (sources, errors)
}

fn io_error(path: &Path, e: &std::io::Error) -> RuleError {
    RuleError {
        file: path.display().to_string(),
        line: 0,
        column: 0,
        message: e.to_string(),
    }
}

/// The text of one rule file, if it is a regular file (through a symlink or not) of at
/// most [`MAX_FILE_BYTES`]. The type is checked before opening, so no FIFO or device is
/// ever opened, and again on what was opened (non-blocking), in case the path was
/// swapped in between.
fn read_rule_file(path: &Path) -> Result<String, String> {
    use std::os::unix::fs::OpenOptionsExt;
    let checked = |meta: &std::fs::Metadata| -> Result<(), String> {
        if !meta.is_file() {
            return Err(format!(
                "not read: {}, not a regular file",
                kind_of(&meta.file_type())
            ));
        }
        if meta.len() > MAX_FILE_BYTES {
            return Err(too_large(meta.len()));
        }
        Ok(())
    };
    checked(&std::fs::metadata(path).map_err(|e| e.to_string())?)?;
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags((rustix::fs::OFlags::NONBLOCK | rustix::fs::OFlags::NOCTTY).bits() as i32)
        .open(path)
        .map_err(|e| e.to_string())?;
    checked(&file.metadata().map_err(|e| e.to_string())?)?;
    let mut bytes = Vec::new();
    file.take(MAX_FILE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| e.to_string())?;
    if bytes.len() as u64 > MAX_FILE_BYTES {
        // it grew after the check
        return Err(too_large(bytes.len() as u64));
    }
    String::from_utf8(bytes).map_err(|_| "not valid UTF-8".to_string())
}

fn too_large(len: u64) -> String {
    format!("not read: {len} bytes, more than the {MAX_FILE_BYTES} a rule file may have")
}

fn kind_of(t: &std::fs::FileType) -> &'static str {
    use std::os::unix::fs::FileTypeExt;
    if t.is_dir() {
        "a directory"
    } else if t.is_fifo() {
        "a FIFO"
    } else if t.is_char_device() || t.is_block_device() {
        "a device"
    } else if t.is_socket() {
        "a socket"
    } else {
        "something else"
    }
}

/// The directories read on top of the shipped rules, in layer order: the system one
/// (when asked for and present), then `dirs`.
pub fn layers(dirs: &[PathBuf], with_system: bool) -> Vec<PathBuf> {
    let system = Path::new(SYSTEM_DIR);
    with_system
        .then(|| system.to_path_buf())
        .filter(|p| p.is_dir())
        .into_iter()
        .chain(dirs.iter().cloned())
        .collect()
}

/// Shipped rules, then the system directory (if present), then `dirs`, compiled leniently:
/// every error, and the set without the broken files. For the commands that look at rules
/// (`rules check`, `explain`, `stats`); what cleans mail uses [`load_strict`].
pub fn load(dirs: &[PathBuf], with_system: bool) -> (Rules, Vec<RuleError>) {
    let shipped_sources = shipped();
    let (sources, mut errors) = read_layers(&layers(dirs, with_system));
    // The shipped files from the postcard the build made of them (read much faster than
    // their TOML), the others from their TOML.
    let parsed = shipped_sources
        .iter()
        .zip(shipped::SHIPPED)
        .map(|(s, (_, _, prepared))| (s, rules::parse_prepared(s, prepared)))
        .chain(sources.iter().map(|s| (s, rules::parse(s))))
        .collect();
    let (rules, compile_errors) = Rules::compile_parsed_lenient(parsed);
    errors.extend(compile_errors);
    (rules, errors)
}

/// The whole set, or every error in it: what a process that cleans mail runs with, at
/// start and at each reload alike. A broken file refuses the set, it is never left out
/// silently: a rule the operator wrote must not stop applying because of a typo.
pub fn load_strict(dirs: &[PathBuf], with_system: bool) -> Result<Rules, Vec<RuleError>> {
    match load(dirs, with_system) {
        (rules, errors) if errors.is_empty() => Ok(rules),
        (_, errors) => Err(errors),
    }
}

/// The sources of every layer (the shipped rules not included), with every read error.
fn read_layers(layers: &[PathBuf]) -> (Vec<RuleSource>, Vec<RuleError>) {
    let mut sources = Vec::new();
    let mut errors = Vec::new();
    for dir in layers {
        let (s, e) = read_dir(dir);
        sources.extend(s);
        errors.extend(e);
    }
    (sources, errors)
}

/// The rules of a long-running process (serve, milter, IMAP --watch): swapped atomically
/// when the rule directories change or on SIGHUP. Loaded by [`load_strict`] at start and
/// at each reload: a set with any error is refused, so a half-edited file never changes
/// what mail gets (at reload the last good set stays).
pub struct LiveRules {
    dirs: Vec<PathBuf>,
    with_system: bool,
    current: std::sync::RwLock<std::sync::Arc<Rules>>,
}

impl LiveRules {
    /// Loads the whole set, or every error in it: a process does not start on a broken
    /// rule file (there is no last good set yet).
    pub fn load(dirs: &[PathBuf], with_system: bool) -> Result<LiveRules, Vec<RuleError>> {
        Ok(LiveRules::with(
            load_strict(dirs, with_system)?,
            dirs,
            with_system,
        ))
    }

    /// These rules, reloaded from `dirs` (and the system directory).
    pub fn with(rules: Rules, dirs: &[PathBuf], with_system: bool) -> LiveRules {
        LiveRules {
            dirs: dirs.to_vec(),
            with_system,
            current: std::sync::RwLock::new(std::sync::Arc::new(rules)),
        }
    }

    /// The current rules (cheap: an `Arc` clone).
    pub fn get(&self) -> std::sync::Arc<Rules> {
        match self.current.read() {
            Ok(g) => std::sync::Arc::clone(&g),
            Err(poisoned) => std::sync::Arc::clone(&poisoned.into_inner()),
        }
    }

    /// Reads every layer again and swaps the new set in, unless any file is broken: then
    /// the last good set stays and the errors are returned.
    pub fn reload(&self) -> Result<(usize, usize, usize, usize), Vec<RuleError>> {
        let rules = load_strict(&self.dirs, self.with_system)?;
        let stats = rules.stats();
        match self.current.write() {
            Ok(mut g) => *g = std::sync::Arc::new(rules),
            Err(poisoned) => *poisoned.into_inner() = std::sync::Arc::new(rules),
        }
        Ok(stats)
    }

    /// The directories read, in layer order (the system one only when it exists).
    pub fn dirs(&self) -> Vec<PathBuf> {
        layers(&self.dirs, self.with_system)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    const GOOD: &str = "[[tracker]]\nid = \"acme\"\nname = \"ACME\"\ncategory = \"esp\"\nsource = \"t\"\n\n[[pixel]]\nid = \"acme-open\"\ntracker = \"acme\"\nhost = \"t.acme.example\"\nsource = \"t\"\n";

    fn mkfifo(path: &Path) {
        rustix::fs::mknodat(
            rustix::fs::CWD,
            path,
            rustix::fs::FileType::Fifo,
            rustix::fs::Mode::from_raw_mode(0o644),
            0,
        )
        .expect("mkfifo");
    }

    /// Runs `f` on a thread; `None` if it has not returned within 10 s (a read blocked
    /// on a FIFO never returns).
    fn within_10s<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Option<T> {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(f());
        });
        rx.recv_timeout(Duration::from_secs(10)).ok()
    }

    #[test]
    fn the_shipped_rules_read_from_their_postcard_as_from_their_toml() {
        for ((name, _, prepared), src) in shipped::SHIPPED.iter().zip(shipped()) {
            // the postcard itself, not the TOML that bytes that do not fit fall back to
            let from_build: rules::schema::RuleFile = postcard::from_bytes(prepared)
                .unwrap_or_else(|e| panic!("{name}: the build's postcard does not read: {e}"));
            let from_toml = rules::parse(&src).unwrap();
            assert_eq!(
                format!("{from_build:?}"),
                format!("{from_toml:?}"),
                "{name}"
            );
        }
    }

    /// A `filter` process reads the shipped rules at every start: their strings are
    /// the binary's own bytes, not copies (issue 17).
    #[test]
    fn the_shipped_rules_borrow_their_strings_from_the_binary() {
        let mut borrowed = 0;
        for ((name, _, prepared), src) in shipped::SHIPPED.iter().zip(shipped()) {
            let file = rules::parse_prepared(&src, prepared).unwrap();
            let bytes = prepared.as_ptr_range();
            let mut check = |s: &rules::schema::Str<'static>| {
                assert!(
                    matches!(&s.0, std::borrow::Cow::Borrowed(b) if bytes.contains(&b.as_ptr())
                        || b.is_empty()),
                    "{name}: {s:?} is a copy"
                );
                borrowed += 1;
            };
            for e in &file.tracker {
                [&e.id, &e.name, &e.source].into_iter().for_each(&mut check);
            }
            for e in &file.pixel {
                [&e.id, &e.tracker, &e.host]
                    .into_iter()
                    .for_each(&mut check);
                e.path.iter().for_each(&mut check);
            }
            for e in &file.redirect {
                [&e.id, &e.tracker, &e.host]
                    .into_iter()
                    .for_each(&mut check);
                e.params.iter().chain(&e.param).for_each(&mut check);
            }
            for e in &file.param {
                check(&e.id);
                e.names.iter().chain(&e.hosts).for_each(&mut check);
            }
            for e in &file.functional {
                check(&e.id);
                e.words.iter().for_each(&mut check);
            }
        }
        assert!(borrowed > 1000, "{borrowed}");
    }

    #[test]
    fn a_fifo_or_device_in_a_rule_directory_is_reported_not_read() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("acme.toml"), GOOD).unwrap();
        mkfifo(&dir.path().join("a-fifo.toml"));
        std::os::unix::fs::symlink("/dev/zero", dir.path().join("b-zero.toml")).unwrap();
        std::os::unix::fs::symlink(
            dir.path().join("a-fifo.toml"),
            dir.path().join("c-to-fifo.toml"),
        )
        .unwrap();
        std::fs::create_dir(dir.path().join("d-dir.toml")).unwrap();
        let path = dir.path().to_path_buf();
        // at start: every one is listed, and the set is refused
        let p = path.clone();
        let errors = within_10s(move || LiveRules::load(&[p], false))
            .expect("loading a rule directory with a FIFO did not return")
            .err()
            .expect("a set with a FIFO in it was loaded");
        let errors: Vec<String> = errors.iter().map(ToString::to_string).collect();
        assert_eq!(errors.len(), 4, "{errors:?}");
        assert!(
            errors[0].contains("a-fifo.toml") && errors[0].contains("a FIFO"),
            "{errors:?}"
        );
        assert!(
            errors[1].contains("b-zero.toml") && errors[1].contains("a device"),
            "{errors:?}"
        );
        assert!(
            errors[2].contains("c-to-fifo.toml") && errors[2].contains("a FIFO"),
            "{errors:?}"
        );
        assert!(
            errors[3].contains("d-dir.toml") && errors[3].contains("a directory"),
            "{errors:?}"
        );
        // at reload: refused, the last good set stays
        let good = tempfile::tempdir().unwrap();
        std::fs::write(good.path().join("acme.toml"), GOOD).unwrap();
        let live = LiveRules::load(&[good.path().to_path_buf()], false).unwrap();
        let rules = live.get();
        let live = std::sync::Arc::new(LiveRules::with((*rules).clone(), &[path], false));
        let l = std::sync::Arc::clone(&live);
        let reloaded = within_10s(move || l.reload()).expect("reload did not return");
        assert_eq!(reloaded.unwrap_err().len(), 4);
        assert!(live.get().match_pixel("t.acme.example", "/o").is_some());
    }

    #[test]
    fn a_rule_file_over_the_size_cap_is_not_read() {
        let dir = tempfile::tempdir().unwrap();
        let live = LiveRules::load(&[dir.path().to_path_buf()], false).unwrap();
        std::fs::write(dir.path().join("acme.toml"), GOOD).unwrap();
        live.reload().unwrap();
        // a comment line makes it one byte too long
        let mut big = GOOD.to_string();
        big.push_str(&format!(
            "#{}\n",
            "x".repeat(MAX_FILE_BYTES as usize - GOOD.len() - 1)
        ));
        std::fs::write(dir.path().join("big.toml"), &big).unwrap();
        let errors = live.reload().unwrap_err();
        assert!(errors[0].to_string().contains("big.toml"), "{errors:?}");
        assert!(
            errors[0].to_string().contains("more than the 8388608"),
            "{errors:?}"
        );
        assert!(live.get().match_pixel("t.acme.example", "/o").is_some());
        // at the cap exactly it is read
        big.pop();
        std::fs::write(dir.path().join("big.toml"), &big).unwrap();
        assert_eq!(big.len() as u64, MAX_FILE_BYTES);
        let (_, errors) = load(&[dir.path().to_path_buf()], false);
        assert!(
            errors.iter().all(|e| !e.to_string().contains("more than")),
            "{errors:?}"
        );
    }

    #[test]
    fn a_symlink_to_a_regular_file_elsewhere_is_read() {
        let available = tempfile::tempdir().unwrap();
        let enabled = tempfile::tempdir().unwrap();
        std::fs::write(available.path().join("acme.toml"), GOOD).unwrap();
        std::os::unix::fs::symlink(
            available.path().join("acme.toml"),
            enabled.path().join("acme.toml"),
        )
        .unwrap();
        let (rules, errors) = load(&[enabled.path().to_path_buf()], false);
        assert!(errors.is_empty(), "{errors:?}");
        assert!(rules.match_pixel("t.acme.example", "/o").is_some());
    }

    #[test]
    fn a_broken_reload_keeps_the_last_good_set() {
        let dir = tempfile::tempdir().unwrap();
        let good = "[[tracker]]\nid = \"acme\"\nname = \"ACME\"\ncategory = \"esp\"\nsource = \"t\"\n\n[[pixel]]\nid = \"acme-open\"\ntracker = \"acme\"\nhost = \"t.acme.example\"\nsource = \"t\"\n";
        let live = LiveRules::load(&[dir.path().to_path_buf()], false).unwrap();
        assert!(live.get().match_pixel("t.acme.example", "/o").is_none());
        std::fs::write(dir.path().join("acme.toml"), good).unwrap();
        live.reload().unwrap();
        assert!(live.get().match_pixel("t.acme.example", "/o").is_some());
        std::fs::write(
            dir.path().join("acme.toml"),
            good.replace("host =", "hots ="),
        )
        .unwrap();
        let errors = live.reload().unwrap_err();
        assert!(errors[0].to_string().contains("acme.toml"), "{errors:?}");
        assert!(
            live.get().match_pixel("t.acme.example", "/o").is_some(),
            "the last good set was dropped"
        );
        // the same file at start: the set is refused with the same error, not loaded
        // without the file
        let at_start = LiveRules::load(&[dir.path().to_path_buf()], false)
            .err()
            .expect("a broken set was loaded at start");
        assert_eq!(at_start, errors);
    }
}
