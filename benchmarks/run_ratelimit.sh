#!/usr/bin/env bash
# run_ratelimit.sh reproduces the rate limiter's figures in
# results/ratelimit/ (see RESULTS_RATELIMIT.md):
#
#   cd benchmarks && ./run_ratelimit.sh          # COUNT=6 rounds
#
# Rounds are repeated rather than passing -count, so that ratelimit and
# redis_rate are measured seconds apart, not a phase apart: on a shared,
# noisy machine this keeps the ratios honest. BenchmarkRateLimitPaired
# goes further for the allowed latency: it alternates the two contenders
# call by call (raw_paired.txt, benchstat_paired.txt). The benchmark starts its own
# redis-server (or uses REDIS_ADDR).
set -euo pipefail
cd "$(dirname "$0")"
COUNT="${COUNT:-6}"
OUT="${OUT:-results/ratelimit}"
mkdir -p "$OUT"
{
  echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
  echo "nproc: $(nproc)"
  echo "cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //')"
  echo "go: $(go version)"
  echo "redis: $(redis-server --version)"
  echo "tiercache: $(git -C .. rev-parse --short HEAD 2>/dev/null || echo unknown)"
  echo "load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
  go list -m all | grep -E 'go-redis|redis_rate' | sed 's/^/  /'
} > "$OUT/machine.txt"
go test -c -o "$OUT/benchmarks.test" .
: > "$OUT/raw.txt"
: > "$OUT/raw_paired.txt"
for i in $(seq "$COUNT"); do
  echo "== round $i/$COUNT" >&2
  "$OUT/benchmarks.test" -test.run='^$' -test.benchmem -test.count=1 \
    -test.bench='^BenchmarkRateLimit$' | tee -a "$OUT/raw.txt"
  "$OUT/benchmarks.test" -test.run='^$' -test.benchmem -test.count=1 \
    -test.benchtime=3s -test.bench='^BenchmarkRateLimitPaired$' | tee -a "$OUT/raw_paired.txt"
done
go tool benchstat -col /impl "$OUT/raw.txt" > "$OUT/benchstat.txt"
go tool benchstat "$OUT/raw_paired.txt" > "$OUT/benchstat_paired.txt"
echo "load average at end: $(cut -d' ' -f1-3 /proc/loadavg)" >> "$OUT/machine.txt"
rm -f "$OUT/benchmarks.test"
