//! `mailveil rules import`: converts other projects' URL-cleaning lists (ClearURLs
//! `data.min.json`, uBlock Origin / AdGuard `$removeparam` filters) into one mailveil rule
//! file (docs/rules.md), ready to drop into a `--rules` directory.
//!
//! What maps is translated exactly or not at all: a regex without an exact glob, and
//! anything the format cannot say (exceptions, raw URL edits, page-dependent options),
//! becomes a `# skipped: WHAT: WHY` line, counted on stderr. An imported rule never
//! matches more than its source meant. Ids are prefixed (`clearurls-`, `removeparam-`) so
//! that they never replace shipped rules.

mod clearurls;
mod out;
mod pattern;
mod removeparam;
mod url;

use anyhow::Context;
use clap::{Args, ValueEnum};
use std::path::PathBuf;
use std::process::ExitCode;

/// The list formats `rules import` reads.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum Format {
    /// ClearURLs data.min.json (providers: urlPattern, rules, referralMarketing, redirections...).
    Clearurls,
    /// uBlock Origin / AdGuard filter list: its `$removeparam` filters.
    Removeparam,
}

/// `mailveil rules import FORMAT FILE [--out FILE]`.
#[derive(Args, Debug)]
pub struct ImportArgs {
    /// The format of FILE.
    #[arg(value_enum)]
    pub format: Format,
    /// The list to convert.
    pub file: PathBuf,
    /// Write the rule file here instead of stdout.
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
}

/// Runs the import: the rule file on stdout or `--out`, the summary on stderr.
pub fn run(args: &ImportArgs) -> anyhow::Result<ExitCode> {
    let text = std::fs::read_to_string(&args.file)
        .with_context(|| format!("cannot read {}", args.file.display()))?;
    let label = args.file.file_name().map_or_else(
        || args.file.display().to_string(),
        |n| n.to_string_lossy().into_owned(),
    );
    let file = match args.format {
        Format::Clearurls => clearurls::import(&text, &label).map_err(anyhow::Error::msg)?,
        Format::Removeparam => removeparam::import(&text, &label),
    };
    let (entries, skipped) = (file.entries, file.skipped);
    let toml = file.finish();
    match &args.out {
        Some(path) => std::fs::write(path, &toml)
            .with_context(|| format!("cannot write {}", path.display()))?,
        None => {
            use std::io::Write;
            let mut out = std::io::stdout().lock();
            out.write_all(toml.as_bytes())
                .and_then(|()| out.flush())
                .context("writing the rule file")?;
        }
    }
    eprintln!(
        "mailveil: imported {entries} entries from {label}; skipped {skipped} (see the `# skipped:` lines)"
    );
    Ok(ExitCode::SUCCESS)
}
