//! The `mailveil` command: parses the command line and hands it to the library.

use clap::Parser;

// The binary's own module (the library forbids unsafe code and sets no allocator).
mod allocator;

/// mimalloc, set up in `allocator` (why, and how it gives memory back).
#[global_allocator]
static ALLOC: allocator::Allocator = allocator::Allocator {};

fn main() -> std::process::ExitCode {
    allocator::configure();
    mailveil::app::run(mailveil::cli::Cli::parse())
}
