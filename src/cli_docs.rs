//! What is written from the command line's own definition, so that it cannot drift from
//! it: the man pages (clap_mangen) and the shell completions (clap_complete). The
//! package build writes both with the binary it packages (contrib/deb/build.sh).

use crate::cli::Cli;
use clap::CommandFactory;
use std::path::Path;

/// The completion script for `shell`, written to `out`. Rendered into memory first:
/// clap_complete panics when its writer fails (a closed pipe), and nothing may panic
/// across a command.
pub(crate) fn completions(
    shell: clap_complete::Shell,
    out: &mut dyn std::io::Write,
) -> Result<(), String> {
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut Cli::command(), "mailveil", &mut script);
    out.write_all(&script)
        .and_then(|()| out.flush())
        .map_err(|e| format!("writing the {shell} completions: {e}"))
}

/// `mailveil.1` and one page per subcommand, nested ones included
/// (`mailveil-serve.1`, `mailveil-rules-check.1`...), hidden ones left out.
pub(crate) fn man_pages(dir: &Path) -> Result<(), String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    clap_mangen::generate_to(Cli::command(), dir).map_err(|e| format!("{}: {e}", dir.display()))
}
