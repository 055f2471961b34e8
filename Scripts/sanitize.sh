#!/usr/bin/env bash
# Runs the tests under the sanitizers (docs/reliability.md, "Sanitizers"). Needs the README's install step first.
#   Scripts/sanitize.sh address   the whole suite under AddressSanitizer (and LeakSanitizer), a release build
#                                 (`swift test -c release --sanitize=address`; a debug build of the suite's
#                                 numerics would take hours); the `unclip` processes the CLI tests start are built
#                                 with it too; leaks are judged by Scripts/sanitizers/check-leaks.py
#   Scripts/sanitize.sh thread    the concurrent code under ThreadSanitizer: the suites of the model actor, its
#                                 shared batches and cancellation, and the server in process, then `unclip serve`
#                                 built with it under the live checks and a load round
#                                 (Scripts/server/server_tests.py --only sanitizer)
#   Scripts/sanitize.sh [all]     both (about 40 minutes on 2 cores, most of it building)
# Each kind builds in its own folder (.build/sanitize-KIND), so the normal build is left alone. A sanitizer's first
# report fails the run; the logs stay in .build/sanitize-KIND.log (and the server's in its work folder).
set -euo pipefail
cd "$(dirname "$0")/.."
which="${1:-all}"
case "$which" in address|thread|all) ;; -h|--help) sed -n 2,12p "$0"; exit 0 ;;
  *) echo "sanitize: unknown kind '$which' (address, thread or all)" >&2; exit 64 ;; esac
export SWIFT_BACKTRACE=enable=no  # the sanitizers print their own reports; the backtracer would stall on each
status=0

run_address() {
  local scratch=.build/sanitize-address log=.build/sanitize-address.log
  # Leaks are checked at exit. halt_on_error: the first report fails the run, as a crash would.
  export ASAN_OPTIONS="detect_leaks=1:halt_on_error=1:abort_on_error=0:detect_stack_use_after_return=0"
  # No scratch pool: a buffer the pool kept would hide a read after its tensor died (one such, a reordered
  # operand released before the loop that read it, crashed only with the pool off).
  export UNCLIP_SCRATCH_POOL_MB=0
  export LSAN_OPTIONS="suppressions=$PWD/Scripts/sanitizers/lsan.supp:print_suppressions=0"
  echo "sanitize: swift test -c release --sanitize=address (log: $log)" >&2
  swift test -c release --sanitize=address --scratch-path "$scratch" >"$log" 2>&1 || true
  # The suite must have passed and run to its end; then the test process's own leak report is read by
  # check-leaks.py (XCTest keeps every test case alive through a cycle of its own: see there).
  local summary; summary=$(grep -E 'Executed [0-9]+ tests?, with' "$log" | tail -1 | grep -oE 'Executed [0-9]+ tests?, with ([0-9]+ tests? skipped and )?0 failures')
  if [ -n "$summary" ] && ! grep -qE "ERROR: AddressSanitizer|error: fatalError|Fatal error" "$log" \
       && python3 Scripts/sanitizers/check-leaks.py "$log"; then
    echo "address: clean ($summary)"
  else
    echo "address: FAILED"; grep -E "ERROR: (Address|Leak)Sanitizer|SUMMARY|error:|failed|Fatal error" "$log" | head -20; status=1
  fi
}

run_thread() {
  local scratch=.build/sanitize-thread log=.build/sanitize-thread.log
  # libgomp is not instrumented, so TSan cannot see its barriers and would report every parallel region of the
  # engine and oneDNN as a race; with one OpenMP thread those regions run on their caller, and what is tested is
  # the Swift concurrency above them (actors, tasks, NIO, locks). Suppressions: Scripts/sanitizers/tsan.supp.
  export OMP_NUM_THREADS=1
  export TSAN_OPTIONS="halt_on_error=1:suppressions=$PWD/Scripts/sanitizers/tsan.supp"
  echo "sanitize: swift test -c release --sanitize=thread (concurrent suites; log: $log)" >&2
  if swift test -c release --sanitize=thread --scratch-path "$scratch" \
       --filter 'UnCLIPServerTests|PipelineStagesTests|InpaintingTests' >"$log" 2>&1; then
    echo "thread (suites): clean ($(grep -E 'Executed [0-9]+ tests?, with' "$log" | tail -1 | grep -oE 'Executed [0-9]+ tests?, with.*failures'))"
  else
    echo "thread (suites): FAILED"; grep -E "WARNING: ThreadSanitizer|SUMMARY|error:|failed" "$log" | head -20; status=1
  fi
  # The server under load, built with TSan (TSan continues after a report here, so the log shows them all).
  export TSAN_OPTIONS="halt_on_error=0:suppressions=$PWD/Scripts/sanitizers/tsan.supp"
  swift build -c release --sanitize=thread --scratch-path "$scratch" --product unclip >>"$log" 2>&1
  local work; work=$(mktemp -d /tmp/unclip-tsan.XXXXXX)
  python3 -c "import openai" 2>/dev/null || python3 -m pip install -q "openai>=1.50,<4" \
    || python3 -m pip install -q --break-system-packages "openai>=1.50,<4"
  if python3 -W ignore::DeprecationWarning Scripts/server/server_tests.py --only sanitizer \
       --unclip "$(swift build -c release --sanitize=thread --scratch-path "$scratch" --show-bin-path)/unclip" \
       --workdir "$work" --clients 12 --per-client 2 >>"$log" 2>&1; then
    echo "thread (server under load): clean ($(grep -E '^load under the sanitizer' "$log" | tail -1))"
    rm -rf "$work"
  else
    echo "thread (server under load): FAILED (server log in $work)"; grep -E "^FAIL|WARNING: ThreadSanitizer" "$log" "$work"/*.log | head -20
    status=1
  fi
}

[ "$which" = thread ] || run_address
[ "$which" = address ] || run_thread
exit "$status"
