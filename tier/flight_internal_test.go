package tier

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/require"
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
	// The sweeper retires the calls on its own goroutine.
	require.Eventually(t, func() bool { return c.fl.tableLen() == 0 }, 10*time.Second, time.Millisecond,
		"calls still in the flight table after the last read")
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
//
// It runs in a synctest bubble: the 15 arrivals 15 ms apart all fall inside
// the one 300 ms load whatever the machine's load (with the wall clock, a
// busy machine spread them past the load's end and a late caller started a
// second load, which is the age limit working, not a bug).
func TestFlights_SlowLoadNotRestartedUnderAgeLimit(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		// The bubble's clock: the cache must not read the process-wide
		// coarse clock, whose goroutine may run outside the bubble.
		c, err := New(&Options[string]{TTL: time.Hour, Clock: bubbleClock{}})
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
			time.Sleep(300 * time.Millisecond) // a slow origin
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
	})
}

// bubbleClock is the system clock, read on every call: inside a synctest
// bubble it is the bubble's fake time.
type bubbleClock struct{}

func (bubbleClock) Now() time.Time { return time.Now() }

// The sweeper wakes for a call to retire only when it naps longer than
// sweepDelay (until a kept call expires); otherwise its next round, at most
// sweepDelay away, takes the call. Either way a completed load leaves the
// table within about sweepDelay: here a kept error (FailSafeThrottle of a
// minute) must not hold a retired call back for that minute. In a synctest
// bubble, no fake time passes while the sweeper works.
func TestFlights_RetiredWhileSweeperNapsOnKeptCall(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c, err := New(&Options[string]{TTL: time.Hour, FailSafe: time.Hour, FailSafeThrottle: time.Minute, Clock: bubbleClock{}})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		ctx := context.Background()
		failing := func(context.Context, string) (string, error) { return "", errors.New("origin down") }
		if _, err := c.GetOrLoad(ctx, "bad", failing); err == nil {
			t.Fatal("GetOrLoad(bad) = nil error, want the origin's")
		}
		time.Sleep(2 * sweepDelay) // the sweeper's first round: it then naps until the kept call expires
		synctest.Wait()
		c.fl.mu.Lock()
		napping := c.fl.napping
		c.fl.mu.Unlock()
		if !napping {
			t.Fatal("sweeper not napping on the kept call")
		}
		if v, err := c.GetOrLoad(ctx, "good", func(context.Context, string) (string, error) { return "v", nil }); err != nil || v != "v" {
			t.Fatalf("GetOrLoad(good) = %q, %v", v, err)
		}
		synctest.Wait() // the kick: the sweeper waits for L1, then takes the call out
		if n := c.fl.tableLen(); n != 1 {
			t.Fatalf("%d calls in the flight table, want 1 (the kept one)", n)
		}
		time.Sleep(time.Minute + sweepDelay)
		synctest.Wait()
		if n := c.fl.tableLen(); n != 0 {
			t.Fatalf("%d calls in the flight table after the kept call expired, want 0", n)
		}
	})
}
