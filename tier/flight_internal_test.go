package tier

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"
)

// tableLen is how many calls the flight table holds.
func (f *flights[V]) tableLen() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.m)
}

// Completed flights leave the table once their values are visible in L1
// (retired in batches by the sweeper), so the table does not grow with the
// number of keys read; until then a caller that misses L1 joins the
// completed call instead of loading again.
func TestFlights_RetiredAfterL1HasTheValue(t *testing.T) {
	c, err := New(&Options[string]{TTL: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx := context.Background()
	var mu sync.Mutex
	loads := map[string]int{}
	load := func(_ context.Context, key string) (string, error) {
		mu.Lock()
		loads[key]++
		mu.Unlock()
		return "v:" + key, nil
	}
	const keys = 2000
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Go(func() {
			for i := range keys {
				k := fmt.Sprint("k", (i+w*keys/4)%keys) // the workers overlap
				if v, err := c.GetOrLoad(ctx, k, load); err != nil || v != "v:"+k {
					t.Errorf("GetOrLoad(%q) = %q, %v", k, v, err)
					return
				}
			}
		})
	}
	wg.Wait()
	deadline := time.Now().Add(5 * time.Second)
	for c.fl.tableLen() > 0 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	if n := c.fl.tableLen(); n != 0 {
		t.Fatalf("%d calls still in the flight table 5 s after the last read", n)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(loads) != keys {
		t.Fatalf("%d keys loaded, want %d", len(loads), keys)
	}
	for k, n := range loads {
		if n != 1 {
			t.Fatalf("key %q loaded %d times: a caller loaded again between the flight's end and L1", k, n)
		}
	}
}

// While the invalidator limits the age of what L1 serves (it is down), a
// load that runs longer than the limit is still joined, not restarted by
// every caller: the age limit is about values read long ago, and a running
// load's value is read now.
func TestFlights_SlowLoadNotRestartedUnderAgeLimit(t *testing.T) {
	c, err := New(&Options[string]{TTL: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	sink[string]{c}.LimitAge(50*time.Millisecond, "test")
	var mu sync.Mutex
	loads := 0
	load := func(context.Context, string) (string, error) {
		mu.Lock()
		loads++
		mu.Unlock()
		time.Sleep(300 * time.Millisecond)
		return "v", nil
	}
	var wg sync.WaitGroup
	for range 15 {
		wg.Go(func() {
			if v, err := c.GetOrLoad(context.Background(), "k", load); err != nil || v != "v" {
				t.Errorf("GetOrLoad = %q, %v", v, err)
			}
		})
		time.Sleep(15 * time.Millisecond) // 225 ms of arrivals, all during the one load
	}
	wg.Wait()
	if loads != 1 {
		t.Fatalf("%d loads of one key, want 1", loads)
	}
}
