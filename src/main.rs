//! The `mailveil` command: parses the command line and hands it to the library.

use clap::Parser;

fn main() -> std::process::ExitCode {
    mailveil::app::run(mailveil::cli::Cli::parse())
}
