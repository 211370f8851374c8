#!/usr/bin/env bash
# The SMTP path measured with Postfix's own load tools, loopback only:
#   direct:    smtp-source -> smtp-sink                       (the limit)
#   mailveil:  smtp-source -> mailveil serve -> smtp-sink
# at 1, 20 and 50 sessions, for three mails: 5 KB plain, a 50 KB HTML newsletter with
# trackers, and 2 MB with an attachment. Prints mails/s, the ratio to the direct path,
# mailveil's peak RSS, and the time mailveil adds per mail (end of DATA to the handoff
# downstream, from its log: p50 and p99).
#
# usage: bench/smtp.sh [MAILS_PER_RUN (default 2000; the 2 MB mail uses a tenth)]
# needs: postfix (smtp-source, smtp-sink), python3; builds target/release/mailveil.
set -euo pipefail
cd "$(dirname "$0")/.."
N="${1:-2000}"
SESSIONS="${SESSIONS:-1 20 50}"
WORK="$(mktemp -d /tmp/mailveil-bench.XXXXXX)"
PIDS=()
cleanup() { for p in "${PIDS[@]:-}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$WORK"; }
trap cleanup EXIT
command -v smtp-source >/dev/null || { echo "smtp-source missing: apt-get install postfix (or bash .ci/setup)" >&2; exit 1; }

cargo build --release --quiet
BIN=target/release/mailveil

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() { for _ in $(seq 1 400); do (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0; sleep 0.025; done; echo "port $1 not up" >&2; exit 1; }

# The three mails (smtp-source -F sends a file as the message, adding CRLF per line).
python3 - "$WORK" <<'PY'
import base64, os, sys
out = sys.argv[1]
head = "From: News <news@sender.example>\nTo: bench@example.test\nSubject: bench\nMessage-ID: <bench@sender.example>\nMIME-Version: 1.0\n"
plain = head + "Content-Type: text/plain; charset=utf-8\n\n" + ("Plain text line of a bench mail, nothing to clean here.\n" * 90)
open(os.path.join(out, "plain-5k.eml"), "w").write(plain)
block = ('<tr><td style="padding:12px"><img src="https://cdn.shop.example/img/p{i}.jpg" alt="Product {i}" width="560" height="300">'
         '<p>Story {i}: lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod tempor.</p>'
         '<a href="https://www.shop.example/p/{i}?utm_source=newsletter&amp;utm_medium=email&amp;mc_eid=abc{i}">Read more</a> '
         '<a href="https://news.us3.list-manage.com/track/click?u=1&amp;id={i}&amp;e=abc">Buy</a></td></tr>\n')
html = ('<html><head><style>.x{background:url(https://cdn.shop.example/bg.png)}</style></head><body><table>'
        + "".join(block.format(i=i) for i in range(120))
        + '<img src="https://news.us3.list-manage.com/track/open.php?u=1&amp;id=2&amp;e=3" width="1" height="1"></table></body></html>\n')
news = head + 'Content-Type: text/html; charset=utf-8\n\n' + html
open(os.path.join(out, "newsletter-50k.eml"), "w").write(news)
blob = base64.encodebytes(os.urandom(1_500_000)).decode()
big = (head + 'Content-Type: multipart/mixed; boundary="b"\n\n--b\nContent-Type: text/html; charset=utf-8\n\n'
       + html + '--b\nContent-Type: application/octet-stream; name="a.bin"\nContent-Disposition: attachment; filename="a.bin"\n'
       + 'Content-Transfer-Encoding: base64\n\n' + blob + '--b--\n')
open(os.path.join(out, "attachment-2m.eml"), "w").write(big)
PY

SINK_PORT=$(free_port)
smtp-sink -u nobody "127.0.0.1:$SINK_PORT" 512 >/dev/null 2>&1 &
PIDS+=($!); wait_port "$SINK_PORT"

run_source() { # port sessions count file -> seconds
  local t0 t1; t0=$(date +%s.%N)
  smtp-source -s "$2" -m "$3" -F "$4" -f news@sender.example -t bench@example.test -M client.example "127.0.0.1:$1" >/dev/null 2>&1
  t1=$(date +%s.%N); awk -v a="$t0" -v b="$t1" 'BEGIN{printf "%.3f", b-a}'
}

printf '%-18s %8s %12s %12s %7s %10s %12s %12s\n' mail sessions direct/s mailveil/s ratio peakRSS clean_p50 clean_p99
echo "loadavg before: $(cut -d' ' -f1-3 /proc/loadavg), $(nproc) CPUs"
for file in plain-5k newsletter-50k attachment-2m; do
  count=$N; [ "$file" = attachment-2m ] && count=$((N / 10))
  for s in $SESSIONS; do
    direct=$(run_source "$SINK_PORT" "$s" "$count" "$WORK/$file.eml")
    PORT=$(free_port); LOG="$WORK/serve-$file-$s.log"
    MAILVEIL_LOG=info "$BIN" serve --no-system-rules --listen "127.0.0.1:$PORT" --downstream "smtp://127.0.0.1:$SINK_PORT" 2>"$LOG" &
    MV=$!; PIDS+=("$MV"); wait_port "$PORT"
    through=$(run_source "$PORT" "$s" "$count" "$WORK/$file.eml")
    rss=$(awk '/VmHWM/{print $2}' "/proc/$MV/status")
    kill "$MV"; wait "$MV" 2>/dev/null || true
    delivered=$(grep -c 'reply=\[250\]' "$LOG" || true)
    [ "$delivered" -ge "$count" ] || echo "warning: $delivered of $count mails acknowledged through mailveil" >&2
    pct=$(grep -o 'clean_us=[0-9]*' "$LOG" | cut -d= -f2 | sort -n | awk '{a[NR]=$1} END{if(NR){i=int(NR*0.5); if(i<1)i=1; j=int(NR*0.99); if(j<1)j=1; printf "%.2f %.2f", a[i]/1000, a[j]/1000}}')
    read -r p50 p99 <<<"${pct:-0 0}"
    awk -v f="$file" -v s="$s" -v n="$count" -v d="$direct" -v m="$through" -v r="$rss" -v p50="$p50" -v p99="$p99" \
      'BEGIN{printf "%-18s %8d %12.0f %12.0f %7.2f %8.0fMB %10.2fms %10.2fms\n", f, s, n/d, n/m, d/m, r/1024, p50, p99}'
  done
done
