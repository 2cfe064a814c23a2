package notify

import "errors"

var (
	// ErrInvalidOptions is wrapped by the errors of [New], [NewConsumer] and
	// [NewOutbox] for options that cannot work, and by [Queue.Enqueue] for a
	// notification that cannot be queued (no user, unknown channel, payload
	// too large).
	ErrInvalidOptions = errors.New("notify: invalid options")
	// ErrUnavailable is wrapped by every error caused by Redis being
	// unreachable, slow or refusing a call, or by an open breaker.
	ErrUnavailable = errors.New("notify: redis unavailable")
	// ErrBufferFull is returned (wrapping [ErrUnavailable] too) by
	// [Queue.Enqueue] when Redis cannot be reached and the local buffer
	// already holds Options.MaxBuffered notifications: the notification is
	// refused, not queued; the caller still owns it.
	ErrBufferFull = errors.New("notify: redis unavailable and the local buffer is full")
	// ErrUnflushed is returned by [Queue.Close] when notifications it had
	// accepted into its local buffer could not be written to Redis before
	// Close gave up; the error says how many.
	ErrUnflushed = errors.New("notify: buffered notifications not written to redis")
	// ErrClosed is returned by the methods of a closed [Queue].
	ErrClosed = errors.New("notify: queue closed")
	// ErrRejected is wrapped by the error of a call Redis refused for good:
	// a key of the notification's user holds another type (WRONGTYPE:
	// written by something else). Retrying cannot help, so such a
	// notification is not buffered; one already buffered, or an outbox
	// row, is dropped and reported (EventRefused) instead of holding up
	// the ones behind it.
	ErrRejected = errors.New("notify: redis rejected the notification")
)
