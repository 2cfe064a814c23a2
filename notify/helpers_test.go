package notify_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/tiercache/tiercache/notify"
)

func newQueue(t *testing.T, rdb redis.UniversalClient, o notify.Options) *notify.Queue {
	t.Helper()
	o.Client = rdb
	if o.Timeout == 0 {
		o.Timeout = 2 * time.Second
	}
	q, err := notify.New(&o)
	require.NoError(t, err)
	t.Cleanup(func() { _ = q.Close(context.Background()) })
	return q
}

func newConsumer(t *testing.T, q *notify.Queue, o notify.ConsumerOptions) *notify.Consumer {
	t.Helper()
	if o.PollInterval == 0 {
		o.PollInterval = 5 * time.Millisecond
	}
	c, err := notify.NewConsumer(q, &o)
	require.NoError(t, err)
	return c
}

// run starts c.Run and stops it when the test ends.
func run(t *testing.T, c *notify.Consumer) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = c.Run(ctx)
	}()
	stop = func() { cancel(); <-done }
	t.Cleanup(stop)
	return stop
}

// deliveredIDs maps every delivered notification (user/entry id: ids are
// unique within one user's stream only) to the provider keys that carried
// it.
func deliveredIDs(r *notify.RecordingSender) map[string][]string {
	m := map[string][]string{}
	for _, msg := range r.Delivered() {
		for _, it := range msg.Items {
			m[msg.User+"/"+it.ID] = append(m[msg.User+"/"+it.ID], msg.IdempotencyKey)
		}
	}
	return m
}

// enqueueN queues n notifications and returns their user/entry ids.
func enqueueN(t *testing.T, q *notify.Queue, user string, ch notify.Channel, n int) []string {
	t.Helper()
	ids := make([]string, 0, n)
	for i := range n {
		r, err := q.Enqueue(t.Context(), notify.Notification{User: user, Channel: ch, DedupKey: fmt.Sprint(ch, i), Payload: []byte(fmt.Sprint(i))})
		require.NoError(t, err)
		require.False(t, r.Duplicate)
		ids = append(ids, user+"/"+r.ID)
	}
	return ids
}
