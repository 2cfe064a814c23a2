package notify

import (
	"fmt"
	"time"
)

// Channel is how a notification reaches its user.
type Channel string

// The channels.
const (
	Email Channel = "email"
	SMS   Channel = "sms"
	Push  Channel = "push"
)

func (c Channel) valid() bool { return c == Email || c == SMS || c == Push }

// MaxPayloadBytes bounds a notification's payload.
const MaxPayloadBytes = 64 << 10

// Notification is one event to tell a user about.
type Notification struct {
	// User is the recipient's id; required.
	User string
	// Channel is Email, SMS or Push; required.
	Channel Channel
	// DedupKey makes the enqueue idempotent: a second notification with the
	// same user, channel and DedupKey within Options.DedupTTL is not queued
	// again ([Receipt.Duplicate]). Empty: the queue makes one up, so that a
	// retry of its own after a timeout never queues twice; the caller's
	// retries are then not recognised.
	DedupKey string
	// Payload is what the sender renders (a template id and its data, say).
	Payload []byte
}

func (n *Notification) check() error {
	switch {
	case n.User == "":
		return fmt.Errorf("%w: notification without a user", ErrInvalidOptions)
	case !n.Channel.valid():
		return fmt.Errorf("%w: unknown channel %q", ErrInvalidOptions, n.Channel)
	case len(n.Payload) > MaxPayloadBytes:
		return fmt.Errorf("%w: payload of %d bytes, limit %d", ErrInvalidOptions, len(n.Payload), MaxPayloadBytes)
	}
	return nil
}

// Receipt says what [Queue.Enqueue] did with a notification.
type Receipt struct {
	// ID is the stream entry id ("1700000000000-0"); empty when Buffered.
	ID string
	// Duplicate: a notification with the same user, channel and DedupKey
	// was queued already; ID is that one's.
	Duplicate bool
	// Buffered: Redis could not be reached and the notification waits in
	// this process's buffer (see [Queue.Enqueue]).
	Buffered bool
}

// Item is one notification inside a [Message].
type Item struct {
	// ID is the notification's stream entry id.
	ID string
	// DedupKey is the notification's DedupKey (or the one the queue made up).
	DedupKey string
	// Payload is the notification's payload.
	Payload []byte
	// At is when Redis queued it (from the entry id).
	At time.Time
}
