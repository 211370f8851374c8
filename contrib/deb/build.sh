#!/usr/bin/env bash
# Builds the Debian package: target/debian/mailveil_VERSION-1_ARCH.deb.
#   bash contrib/deb/build.sh [cargo deb options, e.g. --fast or -o DIR]
# The man pages and shell completions are written by the binary being packaged, from its
# own command-line definitions (`mailveil man`, `mailveil completions`), so the release
# binary is built first, then they are written into contrib/deb/generated/ (not in git),
# then `cargo deb --no-build` packages the lot ([package.metadata.deb] in Cargo.toml).
# Needs cargo-deb (`cargo install cargo-deb --locked`).
set -euo pipefail
cd "$(dirname "$0")/../.."

# MAILVEIL_DEB_PROFILE=dev packages the test build (tests/package.rs: what is checked is
# the package's layout and install, not the code's speed, and CI has that build already;
# `--strip` then strips it as the release profile does). What ships is built `release`.
profile="${MAILVEIL_DEB_PROFILE:-release}"
cargo build --profile "$profile" --locked --bin mailveil
# Where cargo put it (CARGO_TARGET_DIR, a target-dir in .cargo/config.toml, or ./target).
target_dir=$(cargo metadata --format-version 1 --no-deps --locked \
  | sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')
dir=$profile
[ "$profile" = dev ] && dir=debug
bin="$target_dir/$dir/mailveil"

out=contrib/deb/generated
rm -rf "$out"
mkdir -p "$out/man" "$out/completions"
"$bin" man --dir "$out/man"
"$bin" completions bash > "$out/completions/mailveil.bash"
"$bin" completions zsh > "$out/completions/_mailveil"
"$bin" completions fish > "$out/completions/mailveil.fish"

cargo deb --no-build --locked --profile "$profile" "$@"
