// Package benchmarks measures tiercache against its floors (raw ristretto,
// raw go-redis GET + msgpack decode, a bare PostgreSQL SELECT by primary
// key) and its peers (go-redis/cache v9, rueidis client-side caching), all
// caching the same ~560-byte profile. It is its own module, so the peers
// never enter tiercache's go.mod.
//
// The benchmarks start their own redis-server (or use REDIS_ADDR) and need
// PostgreSQL at 127.0.0.1:5432 (or PG_DSN) for the database workloads. See
// RESULTS.md for the figures and run.sh for the command that makes them.
package benchmarks
