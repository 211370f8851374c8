#!/usr/bin/env bash
# Stop the private Dovecot started by dovecot-up.sh (SIGTERM to its master, poll every 20 ms).
# Safe when not running. DV_WIPE=1 also deletes its config/state/log AND the Maildirs.
set -uo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
HARNESS_RUN="${HARNESS_RUN:?set HARNESS_RUN to a state directory outside the source tree, e.g. from mktemp -d}"
DV_DIR="${DV_DIR:-$HARNESS_RUN/dovecot}"
MAIL_ROOT="${MAIL_ROOT:-$HARNESS_RUN/mail}"
PIDF="$DV_DIR/base/master.pid"
IMAP_PORT="${IMAP_PORT:-1143}"
LMTP_PORT="${LMTP_PORT:-2424}"
alive() { local st; st="$(awk '/^State:/{print $2}' "/proc/$1/status" 2>/dev/null)"; [ -n "$st" ] && [ "$st" != Z ]; }

pid=""; [ -f "$PIDF" ] && pid="$(tr -d ' \n' < "$PIDF")"
if [ -n "$pid" ] && alive "$pid" && [ "$(cat /proc/$pid/comm 2>/dev/null)" = dovecot ]; then
  kill -TERM "$pid"
  for i in $(seq 1 250); do alive "$pid" || break; sleep 0.02; done
  if alive "$pid"; then echo "dovecot: master $pid still alive after 5 s, SIGKILL" >&2; kill -KILL "$pid" 2>/dev/null || true; fi
  # children (imap-login, lmtp, auth, ...) exit when the master goes away; wait for our
  # ports (only ours: other Dovecot instances may run on this machine)
  for i in $(seq 1 100); do
    ss -Hltn "( sport = :$IMAP_PORT or sport = :$LMTP_PORT )" 2>/dev/null | grep -q . || break; sleep 0.02
  done
  echo "dovecot: stopped (master pid $pid)"
else
  echo "dovecot: not running"
fi
if [ "${DV_WIPE:-0}" = 1 ]; then rm -rf "$DV_DIR" "$MAIL_ROOT"; fi
exit 0
