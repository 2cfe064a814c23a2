package coarsetime

import (
	"sync"
	"sync/atomic"
	"time"
)

// Resolution is how often the clock is updated.
const Resolution = time.Millisecond

var (
	now atomic.Int64 // unix nanos

	mu   sync.Mutex // guards refs, stop, done
	refs int
	stop chan struct{}
	done chan struct{}
)

// Now returns the time of the last update (unix nanos). Before the first
// Acquire it returns the precise time.
func Now() int64 {
	if n := now.Load(); n != 0 {
		return n
	}
	return time.Now().UnixNano()
}

// Acquire starts the clock if it is not running; every Acquire needs one
// Release.
func Acquire() {
	mu.Lock()
	defer mu.Unlock()
	refs++
	if refs > 1 {
		return
	}
	now.Store(time.Now().UnixNano())
	stop, done = make(chan struct{}), make(chan struct{})
	go run(stop, done)
}

// Release stops the clock after the last holder releases it, and returns
// once its goroutine has exited.
func Release() {
	mu.Lock()
	defer mu.Unlock()
	refs--
	if refs > 0 {
		return
	}
	close(stop)
	<-done
	now.Store(0)
}

func run(stop, done chan struct{}) {
	defer close(done)
	t := time.NewTicker(Resolution)
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case <-t.C:
			now.Store(time.Now().UnixNano())
		}
	}
}
