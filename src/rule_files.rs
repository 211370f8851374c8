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
