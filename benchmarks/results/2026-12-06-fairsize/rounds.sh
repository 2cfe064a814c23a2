#!/usr/bin/env bash
# rounds.sh: the figures of RESULTS.md's "Latest run" (fair sizing), from
# benchmarks/: ROUNDS interleaved rounds of BenchmarkZipf under both
# sizings (and the diagnosis with tiercache's L1 at 32k entries), then the
# load generator under both sizings. Output next to this file.
set -euo pipefail
cd "$(dirname "$0")/../.."
OUT=results/2026-12-06-fairsize
ROUNDS="${ROUNDS:-3}"
BIN="${TMPDIR:-/tmp}/fairsize-bench"
mkdir -p "$BIN"
go test -c -o "$BIN/benchmarks.test" .
go build -o "$BIN/loadgen" ./cmd/loadgen
{
  echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
  echo "tiercache: $(git -C .. rev-parse --short HEAD)"
  echo "load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
} > "$OUT/machine.txt"
zipf() { # sizing, extra flags...
  local sz=$1; shift
  "$BIN/benchmarks.test" -test.run='^$' -test.benchmem -test.count=1 -test.cpu=1,2 -zipf.sizing="$sz" "$@"
}
: > "$OUT/raw-entries.txt"; : > "$OUT/raw-bytes.txt"; : > "$OUT/raw-tc32k.txt"
for i in $(seq "$ROUNDS"); do
  echo "== round $i/$ROUNDS, load $(cut -d' ' -f1-3 /proc/loadavg)" >&2
  order="entries bytes"; [ $((i % 2)) = 0 ] && order="bytes entries"
  for sz in $order; do
    zipf "$sz" -test.bench='^BenchmarkZipf$' | tee -a "$OUT/raw-$sz.txt"
  done
  zipf bytes -zipf.tiercache-l1=32000 -test.bench='^BenchmarkZipf$/^phase=warm$/^impl=tiercache$' | tee -a "$OUT/raw-tc32k.txt"
done
: > "$OUT/loadgen.md"
for i in $(seq "$ROUNDS"); do
  for sz in entries bytes; do
    echo "## round $i, sizing $sz, load $(cut -d' ' -f1-3 /proc/loadavg)" >> "$OUT/loadgen.md"
    "$BIN/loadgen" -duration 5s -sizing "$sz" >> "$OUT/loadgen.md"
  done
  echo "## round $i, tiercache with an L1 of 32k entries, load $(cut -d' ' -f1-3 /proc/loadavg)" >> "$OUT/loadgen.md"
  "$BIN/loadgen" -duration 5s -impls tiercache -l1 0.32 >> "$OUT/loadgen.md"
done
echo "load average at end: $(cut -d' ' -f1-3 /proc/loadavg)" >> "$OUT/machine.txt"
