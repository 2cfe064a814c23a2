package redistest

// admin.go: the clients and polling the cluster and sentinel helpers use to
// drive their servers.

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

const (
	// DefaultWaitTimeout bounds how long the cluster and sentinel helpers
	// wait for the servers to reach a state (healthy, promoted, migrated).
	DefaultWaitTimeout = 30 * time.Second
	// adminTimeout bounds one administrative command.
	adminTimeout = 2 * time.Second
	// settlePoll is the pause between two checks of the servers' state.
	settlePoll = 20 * time.Millisecond
)

// adminClient returns a client for administrative commands on s: no retry,
// short timeouts, so that a dead or paused server answers with a quick
// error. It is closed in tb.Cleanup.
func adminClient(tb testing.TB, s *Server) *redis.Client {
	o := s.Options()
	o.MaxRetries = -1
	o.DialTimeout = 500 * time.Millisecond
	o.DialerRetries = 1
	o.ReadTimeout, o.WriteTimeout = time.Second, time.Second
	o.PoolSize = 2
	o.Protocol = 2 // plain replies for Do, and pub/sub without push frames
	c := redis.NewClient(o)
	tb.Cleanup(func() { _ = c.Close() })
	return c
}

// do runs one administrative command on c.
func do(c *redis.Client, args ...any) *redis.Cmd {
	ctx, cancel := context.WithTimeout(context.Background(), adminTimeout)
	defer cancel()
	return c.Do(ctx, args...)
}

// waitUntil polls cond until it returns nil, failing tb with the last error
// and describe's output when timeout passes. It waits on external processes
// (redis-server reaching a state), never on the test's own goroutines.
func waitUntil(tb testing.TB, timeout time.Duration, what string, cond func() error, describe func() string) {
	tb.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := cond()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			tb.Fatalf("redistest: %s: not reached within %v: %v\n%s", what, timeout, err, describe())
		}
		time.Sleep(settlePoll)
	}
}

// infoField returns the value of field in the INFO section of s, or an
// error.
func infoField(c *redis.Client, section, field string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), adminTimeout)
	defer cancel()
	info, err := c.Info(ctx, section).Result()
	if err != nil {
		return "", err
	}
	for line := range strings.SplitSeq(info, "\r\n") {
		if v, ok := strings.CutPrefix(line, field+":"); ok {
			return v, nil
		}
	}
	return "", fmt.Errorf("no %s in INFO %s", field, section)
}

// role returns the first element of ROLE: "master", "slave" or "sentinel".
func role(c *redis.Client) (string, error) {
	v, err := do(c, "ROLE").Slice()
	if err != nil {
		return "", err
	}
	if len(v) == 0 {
		return "", fmt.Errorf("empty ROLE reply")
	}
	r, _ := v[0].(string)
	return r, nil
}

// replicaLinkUp returns nil if s is a replica whose link to its master is
// up.
func replicaLinkUp(c *redis.Client) error {
	st, err := infoField(c, "replication", "master_link_status")
	if err != nil {
		return err
	}
	if st != "up" {
		return fmt.Errorf("master_link_status:%s", st)
	}
	return nil
}

// live reports whether s is running and not paused, so that it can answer.
func (s *Server) live() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.proc != nil && !s.proc.paused
}

// firstAnswer returns ask's answer from the first live server in ss that
// gives one. If none does, it fails tb with "redistest: <none>: " and every
// error.
func firstAnswer[T any](tb testing.TB, ss []*Server, none string, ask func(*Server) (T, error)) T {
	tb.Helper()
	var errs []error
	for _, s := range ss {
		if !s.live() {
			continue
		}
		v, err := ask(s)
		if err == nil {
			return v
		}
		errs = append(errs, err)
	}
	tb.Fatalf("redistest: %s: %v", none, errors.Join(errs...))
	var zero T
	return zero
}
