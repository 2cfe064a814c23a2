#!/usr/bin/env bash
# End-to-end check of package tierotel against a real Jaeger (see doc.go).
# Builds Jaeger from ./jaeger (a Go tool; about 4 minutes the first time on
# 2 cores, cached afterwards), then runs TestJaeger, which starts Jaeger and
# redis-server on loopback, exports a workload's spans over OTLP, kills Redis
# part way and checks the traces through Jaeger's HTTP API.
#
# Needs redis-server on PATH and 127.0.0.1:4317, 4318, 16685 and 16686 free.
# E2E_TRACES_OUT=FILE keeps the JSON Jaeger returned.
set -euo pipefail
cd "$(dirname "$0")"
export PATH="/usr/local/go/bin:$PATH"

command -v redis-server >/dev/null 2>&1 || {
  echo "run.sh: redis-server not found; install it with: apt-get install -y redis-server" >&2
  exit 1
}
for port in 4317 4318 16685 16686; do
  if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
    echo "run.sh: 127.0.0.1:$port is in use; Jaeger needs it" >&2
    exit 1
  fi
done

bin_dir="${E2E_BIN_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/tiercache-e2e}"
mkdir -p "$bin_dir"
t0=$(date +%s)
echo "run.sh: building jaeger into $bin_dir"
(cd jaeger && go build -o "$bin_dir/jaeger" github.com/jaegertracing/jaeger/cmd/jaeger)
t1=$(date +%s)
echo "run.sh: jaeger built in $((t1 - t0)) s"

JAEGER_BIN="$bin_dir/jaeger" go test -race -count=1 -v -run '^TestJaeger$' ./...
t2=$(date +%s)
echo "run.sh: test took $((t2 - t1)) s; total $((t2 - t0)) s"
