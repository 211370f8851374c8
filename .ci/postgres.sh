#!/usr/bin/env bash
# Installs PostgreSQL (Debian's package; no system-wide server is started) and runs a
# throwaway cluster of its own on loopback only, for the report store tests.
# Prints the URL to use as MAILVEIL_TEST_POSTGRES on its last line.
# Usage: bash .ci/postgres.sh [start|stop]   (idempotent)
set -euo pipefail
PORT="${MAILVEIL_PG_PORT:-55432}"
DIR="${MAILVEIL_PG_DIR:-/tmp/mailveil-pg}"
URL="postgres://postgres@127.0.0.1:${PORT}/postgres"

bin_dir() { ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1; }

if [ "${1:-start}" = stop ]; then
  b="$(bin_dir)"; [ -n "$b" ] && [ -d "$DIR/data" ] && su postgres -s /bin/sh -c "$b/pg_ctl -D $DIR/data -m fast stop" >/dev/null 2>&1 || true
  exit 0
fi

if [ -z "$(bin_dir)" ]; then
  made_policy=0
  if [ ! -e /usr/sbin/policy-rc.d ]; then printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d; chmod 755 /usr/sbin/policy-rc.d; made_policy=1; fi
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends postgresql >/dev/null
  [ "$made_policy" = 1 ] && rm -f /usr/sbin/policy-rc.d
fi
B="$(bin_dir)"
if su postgres -s /bin/sh -c "$B/pg_ctl -D $DIR/data status" >/dev/null 2>&1; then
  echo "$URL"; exit 0
fi
mkdir -p "$DIR"; chown postgres:postgres "$DIR"; chmod 700 "$DIR"
if [ ! -f "$DIR/data/PG_VERSION" ]; then
  # trust, but only on loopback and the private socket directory.
  su postgres -s /bin/sh -c "$B/initdb -D $DIR/data -U postgres --auth=trust -E UTF8 >/dev/null"
fi
su postgres -s /bin/sh -c "$B/pg_ctl -D $DIR/data -l $DIR/log -w -o \"-c listen_addresses=127.0.0.1 -p $PORT -k $DIR\" start" >/dev/null
echo "$URL"
