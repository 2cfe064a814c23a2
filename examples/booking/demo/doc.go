// Package demo is the core of the tiercache demo (cd examples && go run
// ./cmd/demo): it seeds a booking database, drives a realistic mix of reads and writes
// through two cache instances over it, as two application instances would,
// and reports what each tier answered.
//
// [Run] is the whole demo as a function, so that a test can run it for a
// second and check its counters; cmd/demo only parses flags and the
// environment into a [Config].
//
// The mix: mostly reads (profiles, experts, an expert's appointments on a
// day, appointments, a guest's upcoming appointments, experts by
// specialty), with ids drawn from a Zipf distribution so that a few are hot,
// and some writes (bookings of a random slot of a Zipf-drawn expert, which
// may find the slot taken; cancellations of this run's bookings; profile
// updates). Each operation goes to one of the two instances at random, as a
// load balancer would send it.
//
// Stale reads are measured by the demo itself, for profiles: every profile
// update writes a revision number into the bio, and a read that returns a
// revision older than one whose update (commit and invalidation) had
// returned before the read began is counted as stale. tier.Stats has no
// such counter.
package demo
