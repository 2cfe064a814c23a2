package demo

import (
	"math/bits"
	"time"
)

// histogram counts durations in log-linear buckets: 16 per power of two,
// so a quantile is within about 6% of the true value. It is not safe for
// concurrent use: each worker has its own, merged at the end.
type histogram struct {
	counts [64 * 16]uint64
	n      uint64
}

func bucketOf(d time.Duration) int {
	ns := uint64(max(d, 1))
	e := bits.Len64(ns) - 1 // ns in [2^e, 2^(e+1))
	if e < 4 {
		return int(ns)
	}
	m := (ns >> (e - 4)) & 15 // the 4 bits after the leading one
	return e*16 + int(m)
}

// lowerBound is the smallest duration of bucket b.
func lowerBound(b int) time.Duration {
	if b < 64 {
		return time.Duration(b)
	}
	e, m := b/16, uint64(b%16)
	return time.Duration((16 + m) << (e - 4))
}

func (h *histogram) add(d time.Duration) {
	h.counts[bucketOf(d)]++
	h.n++
}

func (h *histogram) merge(o *histogram) {
	for i, c := range o.counts {
		h.counts[i] += c
	}
	h.n += o.n
}

// quantile returns the lower bound of the bucket holding quantile q.
func (h *histogram) quantile(q float64) time.Duration {
	if h.n == 0 {
		return 0
	}
	rank := uint64(q * float64(h.n))
	if rank >= h.n {
		rank = h.n - 1
	}
	var seen uint64
	for i, c := range h.counts {
		seen += c
		if seen > rank {
			return lowerBound(i)
		}
	}
	return 0
}
