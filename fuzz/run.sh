#!/usr/bin/env bash
# Runs every mailveil fuzz target for N seconds each (default 60), one after the other,
# then prints the executions reached and the corpus size per target. Exit 1 if any
# target found a crash (its input is under fuzz/artifacts/<target>/).
#
#   bash fuzz/run.sh [SECONDS] [TARGET...]
#
# Needs cargo-fuzz (installed here when missing) and a Rust toolchain: nightly when rustup
# has it, else the default (stable) one with RUSTC_BOOTSTRAP=1 -- a fresh CI machine has
# only stable. The build flags used here (`-O -s none`: no sanitizer) need no -Z flag, so
# stable builds the same targets; RUSTC_BOOTSTRAP is for FUZZ_FLAGS with a sanitizer. The corpus
# (fuzz/corpus/<target>) grows across runs and stays out of git; the seeds under
# fuzz/seeds/<target> (and the shipped rules/ for rules_parse) are read, never written.
# FUZZ_CORPUS=DIR puts the corpus elsewhere (CI: a fresh one, seeds only); FUZZ_SEED=N
# fixes libFuzzer's random seed, so that a run from the seeds is the same run anywhere
# FUZZ_RUNS="target=N ..." stops each named target after N inputs (SECONDS stays a cap):
# with a fixed seed that is (nearly: libFuzzer keeps a little timing-dependent state) the
# same run on any machine, fast or slow, so CI runs what passed before landing (a
# time-bounded run reaches further on a faster machine, into what was never checked).
set -uo pipefail
cd "$(dirname "$0")"

secs="${1:-60}"
shift || true
targets=("$@")
[ ${#targets[@]} -eq 0 ] && targets=(clean_bytes clean_mime rules_parse link_clean smtp_session)

if rustup toolchain list 2>/dev/null | grep -q '^nightly'; then
  toolchain=(+nightly)
else
  toolchain=()
  export RUSTC_BOOTSTRAP=1
fi
echo "fuzz/run.sh: $(rustc "${toolchain[@]}" --version)${RUSTC_BOOTSTRAP:+ (RUSTC_BOOTSTRAP=1)}" >&2

if ! cargo "${toolchain[@]}" fuzz --version >/dev/null 2>&1; then
  echo "fuzz/run.sh: installing cargo-fuzz" >&2
  t0=$(date +%s)
  cargo install cargo-fuzz --locked || exit 1
  echo "fuzz/run.sh: cargo-fuzz installed in $(( $(date +%s) - t0 ))s" >&2
fi

# Release without debug assertions, as the filter ships: mail-parser 0.11.9 has a
# `debug_assert!` that input reaches (message.rs:485, it recovers in release). No
# sanitizer: the core forbids unsafe code, and the properties are what is checked; set
# FUZZ_FLAGS="-a" (debug assertions, AddressSanitizer) for a slower, stricter run.
read -r -a flags <<< "${FUZZ_FLAGS:--O -s none}"

# One build for all targets (2-core machines: never two fuzz builds at once).
t0=$(date +%s)
cargo "${toolchain[@]}" fuzz build "${flags[@]}" || exit 1
build_secs=$(( $(date +%s) - t0 ))

declare -A extra_args=(
  [clean_bytes]="-max_len=65536 -dict=dicts/mail.dict"
  [clean_mime]="-max_len=65536"
  [rules_parse]="-max_len=16384 -dict=dicts/rules.dict"
  [link_clean]="-max_len=4096"
  [smtp_session]="-max_len=16384 -dict=dicts/smtp.dict"
)

mkdir -p logs
failed=0
summary=()
for t in "${targets[@]}"; do
  corpus="${FUZZ_CORPUS:-corpus}/$t"
  mkdir -p "$corpus"
  seeds=()
  [ -d "seeds/$t" ] && seeds+=("seeds/$t")
  [ "$t" = rules_parse ] && seeds+=("../rules")
  log="logs/$t.log"
  echo "== $t: ${secs}s${FUZZ_RUNS:+ or the runs of FUZZ_RUNS}" >&2
  stamp=$(mktemp)
  # -timeout: one input taking 30 s is a hang; -rss_limit_mb: 2 GB is a blow-up.
  runs=$(tr ' ' '\n' <<< "${FUZZ_RUNS:-}" | sed -n "s/^$t=\([0-9]*\)$/\1/p")
  cargo "${toolchain[@]}" fuzz run "${flags[@]}" "$t" "$corpus" "${seeds[@]}" -- \
    -max_total_time="$secs" ${runs:+-runs=$runs} ${FUZZ_SEED:+-seed=$FUZZ_SEED} -timeout=30 -rss_limit_mb=2048 -print_final_stats=1 \
    ${extra_args[$t]:-} >"$log" 2>&1
  rc=$?
  execs=$(grep -aoE 'stat::number_of_executed_units: *[0-9]+' "$log" | grep -oE '[0-9]+$' | tail -1)
  [ -z "$execs" ] && execs=$(grep -aoE '^Done [0-9]+ runs' "$log" | grep -oE '[0-9]+' | tail -1)
  files=$(find "$corpus" -type f | wc -l)
  bytes=$(du -sk "$corpus" | cut -f1)
  if [ "$rc" -ne 0 ]; then
    failed=1
    status="CRASH (exit $rc; see fuzz/$log and fuzz/artifacts/$t/)"
    # The log holds the input's bytes: -a, or grep calls it binary and prints nothing.
    grep -aE -A3 'panicked at|ERROR: libFuzzer|SUMMARY' "$log" | head -20 >&2
    # The crashing input, printed so that a CI log alone is enough to reproduce it.
    find "artifacts/$t" -type f -newer "$stamp" 2>/dev/null | while read -r a; do
      echo "fuzz/run.sh: $a ($(wc -c <"$a") bytes), base64:" >&2
      head -c 65536 "$a" | base64 -w 0 >&2
      echo >&2
    done
  else
    status="ok"
  fi
  rm -f "$stamp"
  summary+=("$(printf '%-12s %12s execs  corpus %6s files %8s KB  %s' "$t" "${execs:-?}" "$files" "$bytes" "$status")")
done

echo
echo "fuzz summary (${secs}s per target; build ${build_secs}s):"
printf '%s\n' "${summary[@]}"
exit $failed
