#!/usr/bin/env bash
# Stop the private Postfix instance started by postfix-up.sh. Safe to run when it is not running.
# Does what `postfix stop` does (SIGTERM to master(8), which stops its children) but polls
# every 20 ms instead of postfix-script's `sleep 1`.  PF_WIPE=1 also deletes queue/config/log.
set -uo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
HARNESS_RUN="${HARNESS_RUN:?set HARNESS_RUN to a state directory outside the source tree, e.g. from mktemp -d}"
PF_DIR="${PF_DIR:-$HARNESS_RUN/postfix}"
PIDF="$PF_DIR/spool/pid/master.pid"

# alive = exists and is not a zombie (PID 1 in this sandbox reaps orphans only about once a second)
alive() { local st; st="$(awk '/^State:/{print $2}' "/proc/$1/status" 2>/dev/null)"; [ -n "$st" ] && [ "$st" != Z ]; }
pid=""
[ -f "$PIDF" ] && pid="$(tr -d ' \n' < "$PIDF")"
if [ -n "$pid" ] && alive "$pid" && [ "$(cat /proc/$pid/comm 2>/dev/null)" = master ]; then
  kill -TERM "$pid"
  for i in $(seq 1 250); do alive "$pid" || break; sleep 0.02; done
  if alive "$pid"; then
    echo "postfix: master $pid ignored SIGTERM for 5 s, killing its process group" >&2
    kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null || true
  fi
  echo "postfix: stopped (master pid $pid)"
else
  echo "postfix: not running"
fi
[ "${PF_WIPE:-0}" = 1 ] && rm -rf "$PF_DIR"
exit 0
