#!/usr/bin/env bash
# CI entry point for the mail-stack tests (root, Debian 12): installs Postfix, Dovecot
# (core, lmtpd, imapd) and swaks non-interactively without starting any system daemon
# (install.sh puts a temporary /usr/sbin/policy-rc.d in place), then checks the binaries.
# The tests themselves run under `cargo test` with MAILVEIL_REQUIRE_MAILSTACK=1, e.g.:
#   bash tests/mailstack/ci.sh && MAILVEIL_REQUIRE_MAILSTACK=1 cargo test
# Each test starts its own private Postfix and Dovecot on free 127.0.0.1 ports with its
# state in a mktemp directory under /tmp, and stops them again.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
[ "$(id -u)" = 0 ] || { echo "ci.sh: must run as root (apt-get, postfix -c, dovecot -c)" >&2; exit 1; }
WITH_MILTER=0 "$HERE/install.sh"
command -v smtp-source >/dev/null && command -v swaks >/dev/null && command -v dovecot >/dev/null && command -v miltertest >/dev/null
echo "mailstack: ready"
