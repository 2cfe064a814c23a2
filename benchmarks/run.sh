#!/usr/bin/env bash
# run.sh reproduces every table and plot in RESULTS.md:
#
#   cd benchmarks && ./run.sh            # COUNT=6 rounds, output in results/
#
# Each round runs every benchmark once (-count=1); rounds are repeated
# COUNT times rather than passing -count=COUNT, so that a floor and the
# libraries compared with it are measured minutes apart at most, not a
# whole phase apart: on a shared, noisy machine this keeps the ratios
# honest. benchstat reads the rounds exactly as it would read -count=COUNT.
# The benchmarks start their own redis-server (or use REDIS_ADDR) and need
# PostgreSQL at 127.0.0.1:5432 (or PG_DSN).
set -euo pipefail
cd "$(dirname "$0")"
COUNT="${COUNT:-6}"
OUT="${OUT:-results}"
LOADGEN_DURATION="${LOADGEN_DURATION:-20s}"
mkdir -p "$OUT"

# Whether the tree differs from HEAD, read before anything is written to
# $OUT (the results are tracked files too).
dirty="$(git -C .. diff --quiet HEAD -- . ':(exclude)benchmarks/results' 2>/dev/null || echo " + uncommitted changes")"
{
  echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
  echo "nproc: $(nproc)"
  echo "cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //')"
  echo "go: $(go version)"
  echo "redis: $(redis-server --version)"
  echo "postgres: $(psql -h 127.0.0.1 -U postgres -d test -tAc 'SHOW server_version' 2>/dev/null || echo unknown)"
  echo "tiercache: $(git -C .. rev-parse --short HEAD 2>/dev/null || echo unknown)$dirty"
  echo "load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
  echo "modules:"
  go list -m all | grep -E 'ristretto|go-redis|rueidis|msgpack|pgx|gonum|x/perf' | sed 's/^/  /'
} > "$OUT/machine.txt"
cat "$OUT/machine.txt"

go test -c -o "$OUT/benchmarks.test" .
: > "$OUT/raw.txt"
for i in $(seq "$COUNT"); do
  echo "== round $i/$COUNT" >&2
  "$OUT/benchmarks.test" -test.run='^$' -test.benchmem -test.count=1 \
    -test.bench='^Benchmark(L1Hit|L2Hit|MissLoad|Stampede|RedisDown|Staleness)$' | tee -a "$OUT/raw.txt"
  "$OUT/benchmarks.test" -test.run='^$' -test.benchmem -test.count=1 -test.cpu=1,2 \
    -test.bench='^BenchmarkZipf$' | tee -a "$OUT/raw.txt"
done

go tool benchstat "$OUT/raw.txt" > "$OUT/benchstat.txt"
go run ./cmd/benchratio -png "$OUT" "$OUT/raw.txt" > "$OUT/ratios.md"
go run ./cmd/loadgen -duration "$LOADGEN_DURATION" -png "$OUT/loadgen.png" > "$OUT/loadgen.md"
echo "load average at end: $(cut -d" " -f1-3 /proc/loadavg)" >> "$OUT/machine.txt"
echo "done: $OUT/benchstat.txt, $OUT/ratios.md, $OUT/loadgen.md and $OUT/*.png" >&2
