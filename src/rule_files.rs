//! Rule files on disk, layered: shipped rules (built in) < the system directory
//! (`/etc/mailveil/rules.d`) < directories given with `--rules`. A later entry with the
//! same id replaces an earlier one. A broken file is left out and reported, never fatal.

use mailveil_core::{RuleError, RuleSource, Rules};
use std::path::{Path, PathBuf};

mod shipped {
    include!(concat!(env!("OUT_DIR"), "/shipped_rules.rs"));
}

/// The system-wide rules directory, read when it exists.
pub const SYSTEM_DIR: &str = "/etc/mailveil/rules.d";

/// The rule files built into the binary.
pub fn shipped() -> Vec<RuleSource> {
    shipped::SHIPPED
        .iter()
        .map(|(name, text)| RuleSource {
            name: format!("shipped:{name}"),
            text: (*text).to_string(),
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
        match std::fs::read_to_string(&p) {
            Ok(text) => sources.push(RuleSource {
                name: p.display().to_string(),
                text,
            }),
            Err(e) => errors.push(io_error(&p, &e)),
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

/// Shipped rules, then the system directory (if present), then `dirs`, compiled leniently.
pub fn load(dirs: &[PathBuf], with_system: bool) -> (Rules, Vec<RuleError>) {
    let mut sources = shipped();
    let mut errors = Vec::new();
    let system = Path::new(SYSTEM_DIR);
    let layers: Vec<&Path> = with_system
        .then_some(system)
        .filter(|p| p.is_dir())
        .into_iter()
        .chain(dirs.iter().map(PathBuf::as_path))
        .collect();
    for dir in layers {
        let (s, e) = read_dir(dir);
        sources.extend(s);
        errors.extend(e);
    }
    let (rules, compile_errors) = Rules::compile_lenient(&sources);
    errors.extend(compile_errors);
    (rules, errors)
}

/// The rules of a long-running process (serve, milter, IMAP --watch): swapped atomically
/// when the rule directories change or on SIGHUP. A reload that finds any error keeps
/// the last good set, so a half-edited file never changes what mail gets.
pub struct LiveRules {
    dirs: Vec<PathBuf>,
    with_system: bool,
    current: std::sync::RwLock<std::sync::Arc<Rules>>,
}

impl LiveRules {
    /// Loads leniently (a broken file is left out and reported): the process must start.
    pub fn load(dirs: &[PathBuf], with_system: bool) -> (LiveRules, Vec<RuleError>) {
        let (rules, errors) = load(dirs, with_system);
        let live = LiveRules {
            dirs: dirs.to_vec(),
            with_system,
            current: std::sync::RwLock::new(std::sync::Arc::new(rules)),
        };
        (live, errors)
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
        let mut sources = shipped();
        let mut errors = Vec::new();
        for dir in self.dirs() {
            let (s, e) = read_dir(&dir);
            sources.extend(s);
            errors.extend(e);
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        let rules = Rules::compile(&sources).map_err(|e| vec![e])?;
        let stats = rules.stats();
        match self.current.write() {
            Ok(mut g) => *g = std::sync::Arc::new(rules),
            Err(poisoned) => *poisoned.into_inner() = std::sync::Arc::new(rules),
        }
        Ok(stats)
    }

    /// The directories read, in layer order (the system one only when it exists).
    pub fn dirs(&self) -> Vec<PathBuf> {
        let system = Path::new(SYSTEM_DIR);
        self.with_system
            .then(|| system.to_path_buf())
            .filter(|p| p.is_dir())
            .into_iter()
            .chain(self.dirs.iter().cloned())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_broken_reload_keeps_the_last_good_set() {
        let dir = tempfile::tempdir().unwrap();
        let good = "[[tracker]]\nid = \"acme\"\nname = \"ACME\"\ncategory = \"esp\"\nsource = \"t\"\n\n[[pixel]]\nid = \"acme-open\"\ntracker = \"acme\"\nhost = \"t.acme.example\"\nsource = \"t\"\n";
        let (live, errors) = LiveRules::load(&[dir.path().to_path_buf()], false);
        assert!(errors.is_empty());
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
    }
}
