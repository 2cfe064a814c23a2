package codec

import (
	"errors"
	"strings"
)

var (
	// ErrCorrupt is wrapped by every error that [Parse] and [Decode] return
	// for bytes that cannot be turned into a value. The cache treats such bytes
	// as a miss.
	ErrCorrupt = errors.New("codec: corrupt value")

	// ErrSchemaMismatch is wrapped, together with [ErrCorrupt], when the
	// schema tag in the envelope differs from the one the reader expects.
	ErrSchemaMismatch = errors.New("codec: schema mismatch")

	// ErrCodecMismatch is wrapped, together with [ErrCorrupt], when the value
	// was written by a codec with another id than the reader's.
	ErrCodecMismatch = errors.New("codec: codec mismatch")

	// ErrTooLarge is wrapped, together with [ErrCorrupt], when a payload (after
	// decompression) would exceed the maxBytes limit given to [Decode].
	ErrTooLarge = errors.New("codec: value too large")
)

// DecodeError describes why bytes could not be decoded. It matches
// [ErrCorrupt] with errors.Is, and unwraps to its cause.
type DecodeError struct {
	// Reason says what was wrong, for example "bad magic" or
	// "schema 3, want 4".
	Reason string
	// Err is the underlying cause, if any: a sentinel such as
	// [ErrSchemaMismatch], or an error from the decompressor or the codec.
	Err error
}

// Error returns "codec: corrupt value: " followed by the reason and the cause.
func (e *DecodeError) Error() string {
	msg := "codec: corrupt value: " + e.Reason
	if e.Err != nil {
		// Our sentinels and codec errors already say "codec: "; say it once.
		msg += ": " + strings.TrimPrefix(e.Err.Error(), "codec: ")
	}
	return msg
}

// Unwrap returns the underlying cause, which may be nil.
func (e *DecodeError) Unwrap() error { return e.Err }

// Is reports whether target is [ErrCorrupt], so that every DecodeError
// matches it whatever its cause.
func (e *DecodeError) Is(target error) bool { return target == ErrCorrupt }

// corrupt returns a *DecodeError with the given reason and cause.
func corrupt(reason string, err error) error {
	return &DecodeError{Reason: reason, Err: err}
}
