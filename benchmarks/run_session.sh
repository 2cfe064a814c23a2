#!/usr/bin/env bash
# run_session.sh reproduces the session figures in results/session/:
#
#   cd benchmarks && ./run_session.sh          # COUNT=5 rounds, L1COUNT=10
#
# read.txt has every contender; read-l1.txt more rounds of the two
# in-memory ones (a tier L1 hit and session.Manager.Get), whose ratio is
# the target (read it from cpu-sec/op: see BenchmarkSessionRead).
# Rounds are repeated rather than passing -count, so that the contenders are
# measured seconds apart on a shared, noisy machine. The benchmark starts its
# own redis-server (or uses REDIS_ADDR).
set -euo pipefail
cd "$(dirname "$0")"
COUNT="${COUNT:-5}"
L1COUNT="${L1COUNT:-10}"
OUT="${OUT:-results/session}"
mkdir -p "$OUT"
{
  echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
  echo "nproc: $(nproc)"
  echo "cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //')"
  echo "go: $(go version)"
  echo "redis: $(redis-server --version)"
  echo "tiercache: $(git -C .. rev-parse --short HEAD 2>/dev/null || echo unknown)"
  echo "load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
  go list -m all | grep -E 'alexedwards/scs|redigo|go-redis/v9' | sed 's/^/  /'
} > "$OUT/machine.txt"
go test -c -o "$OUT/benchmarks.test" .
: > "$OUT/read.txt"
for i in $(seq "$COUNT"); do
  echo "== round $i/$COUNT" >&2
  "$OUT/benchmarks.test" -test.run='^$' -test.benchmem -test.count=1 -test.benchtime=1s \
    -test.bench='^BenchmarkSessionRead$' >> "$OUT/read.txt"
done
: > "$OUT/read-l1.txt"
for i in $(seq "$L1COUNT"); do
  echo "== L1 round $i/$L1COUNT" >&2
  "$OUT/benchmarks.test" -test.run='^$' -test.benchmem -test.count=1 -test.benchtime=300ms \
    -test.bench='^BenchmarkSessionRead$/.*/^impl=(tier-l1-hit|session)$' >> "$OUT/read-l1.txt"
done
"$OUT/benchmarks.test" -test.run='^$' -test.count=3 -test.benchtime=1x \
  -test.bench='^BenchmarkSessionWrites$' > "$OUT/writes.txt"
go tool benchstat -col /impl "$OUT/read.txt" > "$OUT/read-benchstat.txt" || true
go tool benchstat -col /impl "$OUT/read-l1.txt" > "$OUT/read-l1-benchstat.txt" || true
rm -f "$OUT/benchmarks.test"
echo "load average at end: $(cut -d' ' -f1-3 /proc/loadavg)" >> "$OUT/machine.txt"
