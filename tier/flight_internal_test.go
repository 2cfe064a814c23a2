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
