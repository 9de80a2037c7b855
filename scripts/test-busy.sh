#!/usr/bin/env bash
# make test-busy: the proof that the tests hold on a busy machine. It brings
# `make demo` up (its fixed ports taken, as on a developer's machine), keeps
# every core busy with a CPU hog, and runs `make test` twice in a row. Any
# test that depends on timing, a fixed port or a sleep fails here.
set -euo pipefail
cd "$(dirname "$0")/.."

hogs=()
cleanup() {
	for p in "${hogs[@]}"; do kill "$p" 2>/dev/null || true; done
	make --no-print-directory demo-down >/dev/null 2>&1 || true
}
trap cleanup EXIT

echo "== make demo (left up while the tests run)"
make --no-print-directory demo
cores=$(nproc)
echo "== $cores CPU hogs"
for _ in $(seq "$cores"); do
	yes > /dev/null &
	hogs+=("$!")
done
for run in 1 2; do
	echo "== make test, run $run of 2, load average: $(cut -d' ' -f1-3 /proc/loadavg)"
	start=$(date +%s)
	# -count=1: the second run must run every test again, not replay the
	# first run's results from Go's test cache.
	GOFLAGS="${GOFLAGS:+$GOFLAGS }-count=1" make --no-print-directory test
	echo "== run $run passed in $(( $(date +%s) - start )) s"
done
