package notify

import (
	"context"
	"slices"
	"sync"
)

// Message is a digest: the notifications of one user and one channel that
// fell into one window, sent as one message.
type Message struct {
	User    string
	Channel Channel
	// Items are the digest's notifications in the order they were queued.
	Items []Item
	// IdempotencyKey is the [ProviderKey] of the digest. Pass it to the
	// provider (an Idempotency-Key header, a message id): delivery is at
	// least once, and a digest is re-sent with the same key after a crash.
	IdempotencyKey string
}

// Sender delivers a digest (an email provider, an SMS gateway, a push
// service). Send must be safe for concurrent use. It returns nil once the
// provider has accepted the message; an error leaves the digest queued and
// it is retried after ConsumerOptions.RetryDelay, with the same
// IdempotencyKey. Send must honour ctx and must not keep m.Items after it
// returns.
type Sender interface {
	Send(ctx context.Context, m Message) error
}

// SenderFunc adapts a function to a [Sender].
type SenderFunc func(ctx context.Context, m Message) error

// Send calls f.
func (f SenderFunc) Send(ctx context.Context, m Message) error { return f(ctx, m) }

// RecordingSender is a [Sender] for tests and the demo that keeps what it
// got and behaves like a provider that honours idempotency keys: a message
// whose key it has seen is absorbed (counted, not delivered again). It is
// safe for concurrent use; the zero value is ready.
type RecordingSender struct {
	mu        sync.Mutex
	delivered []Message           // guarded by mu
	byKey     map[string][]string // guarded by mu: key → item ids
	absorbed  int                 // guarded by mu
	conflicts int                 // guarded by mu
}

var _ Sender = (*RecordingSender)(nil)

// Send records m, or absorbs it if its key was seen.
func (r *RecordingSender) Send(_ context.Context, m Message) error {
	ids := make([]string, len(m.Items))
	for i, it := range m.Items {
		ids[i] = it.ID
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.byKey == nil {
		r.byKey = make(map[string][]string)
	}
	if prev, ok := r.byKey[m.IdempotencyKey]; ok {
		r.absorbed++
		if !slices.Equal(prev, ids) {
			r.conflicts++
		}
		return nil
	}
	r.byKey[m.IdempotencyKey] = ids
	m.Items = slices.Clone(m.Items)
	r.delivered = append(r.delivered, m)
	return nil
}

// Delivered returns the messages delivered (absorbed duplicates left out),
// in order.
func (r *RecordingSender) Delivered() []Message {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.delivered)
}

// Absorbed returns how many sends repeated a key already delivered.
func (r *RecordingSender) Absorbed() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.absorbed
}

// Conflicts returns how many sends repeated a key with other items (0
// unless provider keys are broken).
func (r *RecordingSender) Conflicts() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.conflicts
}
