#!/usr/bin/env bash
# Fuzzes the project's parsers with libFuzzer (docs/reliability.md, "Fuzzing"): the targets of Fuzz/ built with
# `-sanitize=fuzzer,address`, each started from its committed seed corpus Fuzz/Corpus/TARGET/.
#   Scripts/fuzz.sh [TARGET|all] [--minutes N] [--parallel P]
#                                 fuzz each target for N minutes (default 30), P targets at a time (default 1);
#                                 new inputs go to .build/fuzz/TARGET/, a crashing input to .build/fuzz/crash-TARGET-*
#   Scripts/fuzz.sh --replay      run every committed corpus input once through its target (seconds)
# Prints each target's executions, coverage (edges) and what it found. Needs the README's install step first.
set -euo pipefail
cd "$(dirname "$0")/.."
targets=(FuzzSafetensors FuzzImage FuzzConfig FuzzTokenizer FuzzModelDirectory FuzzCheckpoint FuzzRequest FuzzArguments)
which=all minutes=30 replay=0 parallel=1
while [ $# -gt 0 ]; do
  case "$1" in
    --minutes) minutes="$2"; shift 2 ;;
    --replay) replay=1; shift ;;
    --parallel) parallel="$2"; shift 2 ;;
    -h|--help) sed -n 2,9p "$0"; exit 0 ;;
    *) which="$1"; shift ;;
  esac
done
if [ "$which" != all ]; then
  [[ " ${targets[*]} " == *" $which "* ]] || { echo "fuzz: no target '$which' (targets: ${targets[*]})" >&2; exit 64; }
  targets=("$which")
fi
echo "fuzz: building ${targets[*]} with -sanitize=fuzzer,address" >&2
swift build -c release --package-path Fuzz -Xswiftc -sanitize=fuzzer,address -Xswiftc -parse-as-library >&2
bin="$(swift build -c release --package-path Fuzz --show-bin-path)"
export SWIFT_BACKTRACE=enable=no  # libFuzzer reports crashes itself; the Swift backtracer would stall each one
export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=0}"
fuzz_one() {
  local t="$1" log=".build/fuzz/$1.log" args result runs cov slowest inputs
  mkdir -p ".build/fuzz/$t"
  if [ "$replay" = 1 ]; then
    args=(-runs=0 "Fuzz/Corpus/$t")
  else
    # A hang is an input that runs 30 s: generous, because the machine may be shared (a build beside the fuzzer can
    # hold a single input back for seconds); the slowest input's time is printed too.
    args=(-max_total_time=$((minutes * 60)) -timeout=30 -rss_limit_mb=4096 -print_final_stats=1
          -artifact_prefix=".build/fuzz/crash-$t-" ".build/fuzz/$t" "Fuzz/Corpus/$t")
  fi
  if "$bin/$t" "${args[@]}" >"$log" 2>&1; then result=ok; else result=FAILED; fi
  runs=$(grep -oE "stat::number_of_executed_units: *[0-9]+" "$log" | grep -oE "[0-9]+$" || true)
  [ -n "$runs" ] || runs=$(grep -oE "^#[0-9]+" "$log" | tail -1 | tr -d '#' || true)
  cov=$(grep -oE "cov: [0-9]+" "$log" | tail -1 | grep -oE "[0-9]+" || true)
  slowest=$(grep -oE "stat::slowest_unit_time_sec: *[0-9]+" "$log" | grep -oE "[0-9]+$" || true)
  inputs=$(ls "Fuzz/Corpus/$t" | wc -l)
  echo "$t: $result, ${runs:-?} executions, coverage ${cov:-?} edges, slowest input ${slowest:-?} s, $inputs committed inputs (log: $log)"
  if [ "$result" = FAILED ]; then grep -E "ERROR|SUMMARY|Fatal error|Test unit written" "$log" | head -5; return 1; fi
}

status=0 running=0
for t in "${targets[@]}"; do
  if [ "$parallel" -le 1 ] || [ "$replay" = 1 ]; then fuzz_one "$t" || status=1; continue; fi
  fuzz_one "$t" & running=$((running + 1))
  if [ "$running" -ge "$parallel" ]; then wait -n || status=1; running=$((running - 1)); fi
done
while [ "$running" -gt 0 ]; do wait -n || status=1; running=$((running - 1)); done
exit "$status"
