#!/usr/bin/env bash
# run_notify.sh reproduces the notify and counters figures in
# results/notify/ (see RESULTS_NOTIFY.md):
#
#   cd benchmarks && ./run_notify.sh          # COUNT=5 rounds
#
# Rounds are repeated rather than passing -count, so that each
# implementation and its floor (raw XADD, raw XREADGROUP+XACK, the
# aggregate query) are measured seconds apart on a shared, noisy machine.
# The benchmarks start their own redis-server (or use REDIS_ADDR).
set -euo pipefail
cd "$(dirname "$0")"
COUNT="${COUNT:-5}"
OUT="${OUT:-results/notify}"
mkdir -p "$OUT"
{
  echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
  echo "nproc: $(nproc)"
  echo "cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //')"
  echo "go: $(go version)"
  echo "redis: $(redis-server --version)"
  echo "tiercache: $(git -C .. rev-parse --short HEAD 2>/dev/null || echo unknown)"
  echo "load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
  go list -m all | grep -E 'go-redis/v9' | sed 's/^/  /'
} > "$OUT/machine.txt"
go test -c -o "$OUT/benchmarks.test" .
: > "$OUT/raw.txt"
for i in $(seq "$COUNT"); do
  echo "== round $i/$COUNT" >&2
  "$OUT/benchmarks.test" -test.run='^$' -test.benchmem -test.count=1 -test.benchtime=1s \
    -test.bench='^Benchmark(NotifyEnqueue|DashboardRead)$' | tee -a "$OUT/raw.txt"
  # Each op of the consume benchmark is a pass over 20,000 notifications,
  # prefilled with the timer stopped: a fixed count keeps the run short.
  "$OUT/benchmarks.test" -test.run='^$' -test.benchmem -test.count=1 -test.benchtime=3x \
    -test.bench='^BenchmarkNotifyConsume$' | tee -a "$OUT/raw.txt"
  # The floor and notify interleaved block by block: the ratios to quote
  # on a machine whose load swings between benchmarks.
  "$OUT/benchmarks.test" -test.run='^$' -test.count=1 -test.benchtime=40x \
    -test.bench='^BenchmarkNotifyPaired$/^op=enqueue$' | tee -a "$OUT/raw.txt"
  "$OUT/benchmarks.test" -test.run='^$' -test.count=1 -test.benchtime=8x \
    -test.bench='^BenchmarkNotifyPaired$/^op=consume$' | tee -a "$OUT/raw.txt"
done
go tool benchstat -col /impl "$OUT/raw.txt" > "$OUT/benchstat.txt" || true
go tool benchstat -col /read "$OUT/raw.txt" > "$OUT/benchstat-dashboard.txt" || true
echo "load average at end: $(cut -d' ' -f1-3 /proc/loadavg)" >> "$OUT/machine.txt"
rm -f "$OUT/benchmarks.test"
