#!/usr/bin/env bash
# The SMTP path measured with Postfix's own load tools, loopback only:
#   direct:    smtp-source -> smtp-sink                       (the limit)
#   mailveil:  smtp-source -> mailveil serve -> smtp-sink
# at 1, 20 and 50 sessions, for four mails: 5 KB and 20 KB plain, a 50 KB HTML
# newsletter with trackers, and 2 MB with an attachment. Each case runs REPEAT times
# (default 5), alternating direct, mailveil with downstream connections kept
# (`--downstream-pool 10`, the default: "pool") and without (`--downstream-pool 0`:
# "nopool"), and with BEFORE=/path/to/an/older/mailveil that binary too ("before"), so
# that every figure of a row comes from the same minutes; it prints medians: mails/s,
# each one's ratio to the direct path, mailveil's peak RSS, and the time mailveil adds
# per mail (end of DATA to the handoff downstream, from its log: p50 and p99), these
# three for the pool runs. Below each row, every run's mails/s, in the order they ran.
#
# usage: bench/smtp.sh [MAILS_PER_RUN (default 2000; the 2 MB mail uses a tenth)]
#   SESSIONS="1 20 50"  FILES="plain-5k plain-20k newsletter-50k attachment-2m"
#   REPEAT=5  BEFORE=/path/to/mailveil (optional)  RELAY=1 (optional)
# needs: postfix (smtp-source, smtp-sink), python3; builds target/release/mailveil.
set -euo pipefail
cd "$(dirname "$0")/.."
N="${1:-2000}"
SESSIONS="${SESSIONS:-1 20 50}"
FILES="${FILES:-plain-5k plain-20k newsletter-50k attachment-2m}"
REPEAT="${REPEAT:-5}"
BEFORE="${BEFORE:-}"
RELAY="${RELAY:-}"
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
plain20 = head + "Content-Type: text/plain; charset=utf-8\n\n" + ("Plain text line of a bench mail, nothing to clean here.\n" * 360)
open(os.path.join(out, "plain-20k.eml"), "w").write(plain20)
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

# The relay runs' rules: every bench mail (From: news@sender.example) passes untouched.
mkdir -p "$WORK/relay-rules"
cat >"$WORK/relay-rules/relay.toml" <<'TOML'
[[allow]]
id = "bench-relay"
senders = ["sender.example"]
source = "bench/smtp.sh: the SMTP path without cleaning"
TOML

SINK_PORT=$(free_port)
smtp-sink -u nobody "127.0.0.1:$SINK_PORT" 512 >/dev/null 2>&1 &
PIDS+=($!); wait_port "$SINK_PORT"

run_source() { # port sessions count file -> seconds
  local t0 t1; t0=$(date +%s.%N)
  smtp-source -s "$2" -m "$3" -F "$4" -f news@sender.example -t bench@example.test -M client.example "127.0.0.1:$1" >/dev/null 2>&1
  t1=$(date +%s.%N); awk -v a="$t0" -v b="$t1" 'BEGIN{printf "%.3f", b-a}'
}

median() { sort -n | awk '{a[NR]=$1} END{if(NR) print a[int((NR+1)/2)]; else print 0}'; }
# Every run's mails/s from a file of seconds.
runs() { awk -v c="$1" '$1 > 0 {printf " %.0f", c/$1}' "$2"; }

# One run through mailveil: BIN sessions count file pool -> "seconds rssKB p50ms p99ms".
run_mailveil() {
  local bin="$1" s="$2" count="$3" file="$4" pool="$5" port log mv t rss delivered pct
  port=$(free_port); log="$WORK/serve.log"
  local flag=(--downstream-pool "$pool"); [ "$pool" = - ] && flag=()
  [ "$pool" = relay ] && flag=(--rules "$WORK/relay-rules")
  MAILVEIL_LOG=info "$bin" serve --no-system-rules --listen "127.0.0.1:$port" --downstream "smtp://127.0.0.1:$SINK_PORT" "${flag[@]}" 2>"$log" &
  mv=$!; PIDS+=("$mv"); wait_port "$port"
  t=$(run_source "$port" "$s" "$count" "$WORK/$file.eml")
  rss=$(awk '/VmHWM/{print $2}' "/proc/$mv/status")
  kill "$mv"; wait "$mv" 2>/dev/null || true
  delivered=$(grep -c 'reply=\[250\]' "$log" || true)
  [ "$delivered" -ge "$count" ] || echo "warning: $delivered of $count mails acknowledged through $bin (pool $pool)" >&2
  pct=$(grep -o 'clean_us=[0-9]*' "$log" | cut -d= -f2 | sort -n | awk '{a[NR]=$1} END{if(NR){i=int(NR*0.5); if(i<1)i=1; j=int(NR*0.99); if(j<1)j=1; printf "%.2f %.2f", a[i]/1000, a[j]/1000}}')
  echo "$t $rss ${pct:-0 0}"
}

echo "loadavg before: $(cut -d' ' -f1-3 /proc/loadavg), $(nproc) CPUs; $REPEAT runs per case, medians"
cols='%-15s %4s %9s %9s %6s %9s %6s'
hdr=(mail sess direct/s pool/s ratio nopool/s ratio)
[ -n "$BEFORE" ] && { cols="$cols %9s %6s"; hdr+=(before/s ratio); }
[ -n "$RELAY" ] && { cols="$cols %9s %6s"; hdr+=(relay/s ratio); }
printf "$cols %8s %9s %9s\n" "${hdr[@]}" peakRSS p50 p99
for file in $FILES; do
  count=$N; [ "$file" = attachment-2m ] && count=$((N / 10))
  for s in $SESSIONS; do
    : >"$WORK/d"; : >"$WORK/p"; : >"$WORK/n"; : >"$WORK/b"; : >"$WORK/r"; : >"$WORK/rss"; : >"$WORK/p50"; : >"$WORK/p99"
    for _ in $(seq 1 "$REPEAT"); do
      run_source "$SINK_PORT" "$s" "$count" "$WORK/$file.eml" >>"$WORK/d"; echo >>"$WORK/d"
      read -r t rss p50 p99 < <(run_mailveil "$BIN" "$s" "$count" "$file" 10)
      echo "$t" >>"$WORK/p"; echo "$rss" >>"$WORK/rss"; echo "$p50" >>"$WORK/p50"; echo "$p99" >>"$WORK/p99"
      read -r t _ < <(run_mailveil "$BIN" "$s" "$count" "$file" 0); echo "$t" >>"$WORK/n"
      if [ -n "$BEFORE" ]; then read -r t _ < <(run_mailveil "$BEFORE" "$s" "$count" "$file" -); echo "$t" >>"$WORK/b"; fi
      if [ -n "$RELAY" ]; then read -r t _ < <(run_mailveil "$BIN" "$s" "$count" "$file" relay); echo "$t" >>"$WORK/r"; fi
    done
    d=$(median <"$WORK/d"); p=$(median <"$WORK/p"); n=$(median <"$WORK/n"); b=$(median <"$WORK/b"); r=$(median <"$WORK/r")
    rss=$(median <"$WORK/rss"); p50=$(median <"$WORK/p50"); p99=$(median <"$WORK/p99")
    awk -v f="$file" -v s="$s" -v c="$count" -v d="$d" -v p="$p" -v n="$n" -v b="$b" -v before="$BEFORE" -v rl="$r" -v relay="$RELAY" \
        -v r="$rss" -v p50="$p50" -v p99="$p99" 'BEGIN{
      printf "%-15s %4d %9.0f %9.0f %6.2f %9.0f %6.2f", f, s, c/d, c/p, d/p, c/n, d/n
      if (before != "") printf " %9.0f %6.2f", c/b, d/b
      if (relay != "") printf " %9.0f %6.2f", c/rl, d/rl
      printf " %6.0fMB %7.2fms %7.2fms\n", r/1024, p50, p99 }'
    b_runs=""; [ -n "$BEFORE" ] && b_runs=" | before$(runs "$count" "$WORK/b")"
    [ -n "$RELAY" ] && b_runs="$b_runs | relay$(runs "$count" "$WORK/r")"
    echo "  runs, mails/s: direct$(runs "$count" "$WORK/d") | pool$(runs "$count" "$WORK/p") | nopool$(runs "$count" "$WORK/n")$b_runs"
  done
done
echo "loadavg after: $(cut -d' ' -f1-3 /proc/loadavg)"
