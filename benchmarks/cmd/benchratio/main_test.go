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

const stalenessSample = `BenchmarkStaleness/impl=raw-publish-receive-2   2000  1 ns/op  50.0 p50-us  100.0 p99-us  0 stale-never/op
BenchmarkStaleness/impl=tiercache-2             2000  1 ns/op  150.0 p50-us  400.0 p99-us  0 stale-never/op
BenchmarkStaleness/impl=go-redis-cache-2        2000  1 ns/op  1000000 p50-us  1000000 p99-us  1.000 stale-never/op
BenchmarkStaleness/impl=raw-publish-receive-2   2000  1 ns/op  50.0 p50-us  200.0 p99-us  0 stale-never/op
BenchmarkStaleness/impl=tiercache-2             2000  1 ns/op  100.0 p50-us  600.0 p99-us  0 stale-never/op
BenchmarkStaleness/impl=go-redis-cache-2        2000  1 ns/op  1000000 p50-us  1000000 p99-us  1.000 stale-never/op
`

func TestTable_Staleness(t *testing.T) {
	ss, err := parse(strings.NewReader(stalenessSample))
	if err != nil {
		t.Fatal(err)
	}
	var out strings.Builder
	verdicts := table(&out, ss[0].group, ss)
	for _, want := range []string{
		"| impl | median p99-us | median p50-us | median stale-never/op | p99-us ÷ raw-publish-receive | p50-us ÷ raw-publish-receive |",
		// p99: 400/100 and 600/200; p50: 150/50 and 100/50.
		"| tiercache | 500 | 125 | 0 | 3.50× (3.00–4.00) | 2.50× (2.00–3.00) |",
		"| go-redis-cache | ≥ 1000000 | ≥ 1000000 | 1.00 | ≥ 7500.00× (5000.00–10000.00) | ≥ 20000.00× (20000.00–20000.00) |",
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("table lacks %q:\n%s", want, out.String())
		}
	}
	if len(verdicts) != 1 || !strings.Contains(verdicts[0], "within 500 µs at p99 (p50 125 µs), target ≤ 1000 µs: met; stale-never/op 0; p99 ÷ raw-publish-receive = 3.50×") {
		t.Errorf("verdicts = %q", verdicts)
	}
}
