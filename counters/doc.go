// Package counters keeps activity and revenue figures in Redis:
// time-bucketed counters (INCRBY) and unique counts (HyperLogLog),
// incremented from many instances, and dashboard reads of them through a
// tier cache with refresh-ahead.
//
//	c, _ := counters.New(&counters.Options{Client: rdb, Bucket: time.Minute})
//	go c.Run(ctx, time.Second)        // flushes every second
//	c.Add("bookings", 1)              // in memory, never blocks on Redis
//	c.AddUnique("visitors", userID)
//	d, _ := counters.NewDashboard(c, &tier.Options[int64]{L2: l2, TTL: 10 * time.Second})
//	n, _ := d.Sum(ctx, "bookings", 24*time.Hour)
//
// # Keys
//
// Every key of a counter name carries the name as its hash tag:
// <ns>:{<name>}:c:<bucket ms> (counter), <ns>:{<name>}:u:<bucket ms>
// (HyperLogLog), <ns>:{<name>}:f:<instance> (flush marker). A flush of a
// name and a query over any range of its buckets touch one slot. Each
// bucket's TTL (its end plus Options.Retention) is set in the command that
// writes it.
//
// # Redis unreachable: accumulate, flush once
//
// Increments are added in memory (Add never waits for Redis) and written
// by Flush. When Redis cannot be reached they accumulate, up to
// Options.MaxPending cells (then Add refuses with [ErrFull]: counted by
// the caller, never dropped silently). A flush numbers each counter's
// batch per instance; one script applies the batch and records the number
// in the instance's marker; a batch whose outcome is unknown is retried as
// it is and skipped if the marker has it, and later increments wait for
// the next batch. So increments are written once: not lost, not twice
// (TestCounters_RedisKilled: N increments from two instances with Redis
// killed in the middle, exactly N after recovery; TestCounters_UnknownOutcome).
// Unique members go by PFADD, which is idempotent.
//
// Limits: pending increments live in process memory and die with the
// process; a Redis that loses acknowledged writes (no persistence, an
// asynchronous replica promoted) loses them, markers included, unless
// Options.WaitReplicas is set: a batch is then done only once that many
// replicas acknowledged it (WAIT on the connection that wrote it), and is
// retried otherwise, so a promoted replica has it or gets it, exactly once
// (TestCounters_ClusterMasterKilled: N increments from two instances on a
// 3+3 Cluster, the counter's master SIGKILLed in the middle, exactly N
// after recovery). The price: while a master has fewer live replicas than
// WaitReplicas, its batches wait (and Add refuses past MaxPending).
//
// Flushes and queries go through a circuit breaker (the one the cache and
// the other primitives share, Options.Breaker): while it is open they fail
// at once with [ErrUnavailable] and increments keep accumulating
// (TestCounters_Breaker). On a Cluster a connection error makes the client
// re-read its slot map, so flushes follow a promoted replica. What happens
// is reported to Options.Observer ([EventFlushed], [EventReplayed],
// [EventUnavailable], [EventRefused]; tierotel.NewCountersObserver).
//
// # Time
//
// An increment's bucket is picked by the instance's clock when it is added
// (AddAt takes an event's own time), not by Redis's: increments buffered
// during an outage keep their time. Instance clock skew moves an increment
// across a bucket boundary by at most the skew.
//
// # HyperLogLog error
//
// Redis's HyperLogLog has a standard error of 0.81%; a union over buckets
// (PFCOUNT of several keys) has the same. TestCounters_HyperLogLogError
// checks 100,000 members within 3 standard errors (2.43%).
package counters
