#!/usr/bin/env bash
# Stop everything the harness may have started (by PID files only). ALL_WIPE=1 also deletes $HARNESS_RUN.
set -uo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
export HARNESS_RUN="${HARNESS_RUN:?set HARNESS_RUN to a state directory outside the source tree, e.g. from mktemp -d}"
for d in "$HARNESS_RUN"/postfix*; do [ -d "$d/spool" ] && PF_DIR="$d" "$HERE/postfix-down.sh"; done
"$HERE/dovecot-down.sh"
[ "${ALL_WIPE:-0}" = 1 ] && rm -rf "$HARNESS_RUN"
exit 0
