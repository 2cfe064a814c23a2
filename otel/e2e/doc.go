// Package e2e checks package tierotel end to end against a real Jaeger: a
// tier.Cache with L2 on a real redis-server exports its spans over OTLP to
// Jaeger (all-in-one, in-memory storage, loopback only), Redis is killed
// part way, and the test reads the traces back through Jaeger's HTTP API.
//
// It is a module of its own so that Jaeger's dependencies never enter
// tiercache's go.mod; Jaeger itself is a Go tool of a further module,
// ./jaeger, whose dependency versions are Jaeger's own (its OpenTelemetry
// Collector cannot build against the OpenTelemetry versions tiercache
// uses). Run it with run.sh, which builds Jaeger (about 4 minutes the first
// time on 2 cores, cached afterwards) and runs the test:
//
//	otel/e2e/run.sh
package e2e
