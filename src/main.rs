//! The `mailveil` command: parses the command line and hands it to the library.

use clap::Parser;

/// mimalloc rather than the system allocator: cleaning a mail is many small, short-lived
/// allocations (URL pieces, findings), on which glibc's malloc spent a fifth of the
/// newsletter's instructions (issue 17, docs/performance.md).
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    mailveil::app::run(mailveil::cli::Cli::parse())
}
