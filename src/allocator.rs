//! The allocator the `mailveil` binary (and `benches/clean.rs`, which times what ships)
//! installs: mimalloc, set up to give memory back as glibc's malloc does.
//!
//! Cleaning a mail is many small, short-lived allocations (URL pieces, findings), on which
//! glibc's malloc and free spent a fifth of a newsletter's instructions (issue 17,
//! docs/performance.md). mimalloc's defaults trade memory for that speed in two ways this
//! program does not want: it asks for transparent huge pages on its arenas (9 MB more per
//! `filter` process, one per mail under procmail or sieve), and it keeps freed memory a
//! second before giving it back, so that a mail over `--max-message-bytes`, read as it
//! streams, held twice the limit (tests/cli.rs measures both). The crate's `no_thp`
//! feature takes care of the first; [`configure`] of the second.

/// The allocator to install with `#[global_allocator]`.
pub type Allocator = mimalloc::MiMalloc;

/// `mi_option_purge_delay` in mimalloc's `mimalloc.h` (its `mi_option_e`, in order): the
/// Rust bindings of libmimalloc-sys 0.1.49 do not name it. A different value here would
/// set another option; tests/cli.rs's memory bound is what notices.
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// Freed memory goes back to the system at once (mimalloc's purge delay 0), as glibc
/// returns a large block on free. Call first thing in `main`: mimalloc reads the option
/// whenever it purges, so what was allocated before is covered too.
pub fn configure() {
    // SAFETY: sets one of mimalloc's process-wide integer options; no pointer is involved
    // and mimalloc allows options to be set at any time.
    unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, 0) };
}
