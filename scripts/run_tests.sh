#!/usr/bin/env bash
# The test suite, as `make test` runs it (extra pytest options as arguments).
#   TEST_WORKERS=0     one serial pytest session (every test, in file order)
#   TEST_WORKERS=N|auto  two passes: the tests not marked `realtime` on N pytest-xdist workers
#                      (a whole file per worker, at most 4), then the `realtime` tests serially,
#                      alone on the machine, so a second worker cannot make them miss a frame
# Exit status: non-zero if either pass failed (both passes always run). A pass that selects
# no test (pytest's status 5, e.g. PYTEST_ARGS naming one file) counts as passed.
set -uo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PYTHON="${PYTHON:-${VENV:-$ROOT/.venv}/bin/python}"
WORKERS="${TEST_WORKERS:-auto}"
cd "$ROOT"

pass() {  # pytest with the given args: succeeds when it passed or selected no test
    "$PYTHON" -m pytest "$@"
    local rc=$?
    [ "$rc" -eq 0 ] || [ "$rc" -eq 5 ]
}

if [ "$WORKERS" = 0 ]; then
    pass "$@"
    exit $?
fi
status=0
echo "[test] pass 1 of 2: tests not marked realtime, on $WORKERS pytest-xdist workers"
pass -n "$WORKERS" --maxprocesses 4 --dist loadfile -m "not realtime" "$@" || status=1
echo "[test] pass 2 of 2: the realtime tests, serially"
pass -p no:xdist -m realtime "$@" || status=1
exit $status
