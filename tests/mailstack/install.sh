#!/usr/bin/env bash
# Install the real mail components non-interactively (Debian 12 "bookworm", as root), without
# letting any package start a system-wide daemon. Idempotent; ~1 s when already installed.
#
# One-line equivalent:
#   apt-get update && echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends postfix dovecot-core dovecot-lmtpd dovecot-imapd swaks python3-milter miltertest iproute2
#
# postfix  -> /usr/sbin/postfix, postconf, postqueue, smtp-source, smtp-sink (all in the postfix package)
# dovecot-core + dovecot-lmtpd + dovecot-imapd -> /usr/sbin/dovecot, /usr/lib/dovecot/{lmtp,imap}
# swaks    -> /usr/bin/swaks (SMTP/LMTP client)
# miltertest -> drives `mailveil milter` directly (tests/milter_mailstack.rs)
# python3-milter -> optional (WITH_MILTER=1), only for the harness's own test milter
set -euo pipefail
PKGS="postfix dovecot-core dovecot-lmtpd dovecot-imapd swaks python3-milter miltertest iproute2"
[ "${WITH_MILTER:-0}" = 1 ] || PKGS="${PKGS/python3-milter /}"

missing=""
for p in $PKGS; do dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing="$missing $p"; done
if [ -z "$missing" ]; then echo "install: all present"; else
  t0=$(date +%s.%N)
  # Never let postinst start the system postfix/dovecot (dovecot's would listen on *:143/993 etc.)
  made_policy=0
  if [ ! -e /usr/sbin/policy-rc.d ]; then printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d; chmod 755 /usr/sbin/policy-rc.d; made_policy=1; fi
  trap '[ "$made_policy" = 1 ] && rm -f /usr/sbin/policy-rc.d' EXIT
  # "No configuration": postinst writes no /etc/postfix/main.cf, so nothing system-wide is set up
  echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections
  echo "postfix postfix/mailname string mx.example.test" | debconf-set-selections
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
      -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold $missing >/dev/null
  echo "install:$missing -- $(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN{printf "%.1f", b-a}') s"
fi
for p in $PKGS; do printf '  %-16s %s\n' "$p" "$(dpkg-query -W -f='${Version}' "$p")"; done
for b in /usr/sbin/postfix /usr/sbin/smtp-source /usr/sbin/smtp-sink /usr/sbin/dovecot /usr/bin/swaks \
         /usr/lib/dovecot/lmtp /usr/lib/dovecot/imap; do
  [ -x "$b" ] || { echo "install: missing $b" >&2; exit 1; }
done
