// Package zipf makes the key traces of the Zipf workload: the same
// deterministic sequence for every contender.
package zipf

import (
	"math/rand/v2"

	"github.com/tiercache/tiercache/benchmarks/internal/fixture"
)

// Defaults of the Zipf workload.
const (
	// Keys is how many distinct profiles the trace draws from.
	Keys = 100_000
	// S is the Zipf exponent (> 1 for math/rand's generator); with 100k
	// keys, the hottest 10% of keys receive about 80% of the reads.
	S = 1.01
	// L1Share is the share of the keys an L1 is sized to hold.
	L1Share = 0.10
)

// Trace returns n key indexes in [0, keys), Zipf-distributed with exponent
// s, from seed. Index 0 is the hottest key.
func Trace(n, keys int, s float64, seed uint64) []int32 {
	z := rand.NewZipf(rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)), s, 1, uint64(keys-1))
	t := make([]int32, n)
	for i := range t {
		t[i] = int32(z.Uint64())
	}
	return t
}

// KeyNames returns the key of each index (profile id = index + 1).
func KeyNames(keys int) []string {
	k := make([]string, keys)
	for i := range k {
		k[i] = fixture.Key(int64(i + 1))
	}
	return k
}
