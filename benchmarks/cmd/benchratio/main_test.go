package main

import (
	"strings"
	"testing"
)

const sample = `goos: linux
BenchmarkL1Hit/mode=serial/impl=ristretto-metrics-2   	 100	 200.0 ns/op	 0 B/op	 0 allocs/op
BenchmarkL1Hit/mode=serial/impl=tiercache-2           	 100	 260.0 ns/op	 0 B/op	 0 allocs/op
BenchmarkL1Hit/mode=serial/impl=ristretto-metrics-2   	 100	 100.0 ns/op	 0 B/op	 0 allocs/op
BenchmarkL1Hit/mode=serial/impl=tiercache-2           	 100	 150.0 ns/op	 0 B/op	 0 allocs/op
BenchmarkZipf/phase=cold/impl=tiercache               	 1	 5 ns/op	 70.0 l1-hit-%	 1000 ns/get
PASS
`

func TestParse_PairsRounds(t *testing.T) {
	ss, err := parse(strings.NewReader(sample))
	if err != nil {
		t.Fatal(err)
	}
	if len(ss) != 3 {
		t.Fatalf("got %d series, want 3", len(ss))
	}
	floor, tc := find(ss, "ristretto-metrics"), find(ss, "tiercache")
	if floor.group != "L1Hit/mode=serial cpu=2" || len(tc.rounds) != 2 {
		t.Fatalf("bad grouping: %+v %+v", floor, tc)
	}
	r, ok := pairRatio(tc, floor, "ns/op")
	if !ok || r.lo != 1.3 || r.hi != 1.5 || r.med != 1.4 {
		t.Fatalf("ratio = %+v, want 1.3–1.5, median 1.4", r)
	}
	if z := ss[2]; z.group != "Zipf/phase=cold cpu=1" || z.median("ns/get") != 1000 {
		t.Fatalf("zipf series %+v", z)
	}
}
