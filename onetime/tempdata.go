package onetime

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/tiercache/tiercache/codec"
)

// Defaults of [TempDataOptions].
const (
	DefaultTempTTL      = 30 * time.Minute
	DefaultTempMaxBytes = 1 << 20
	// updateAttempts bounds the compare-and-set rounds of TempData.Update.
	updateAttempts = 16
)

// TempDataOptions configures a [TempData]. NewTempData copies it.
type TempDataOptions struct {
	// Client is the Redis client (ContextTimeoutEnabled). Required.
	Client redis.UniversalClient
	// Name names this kind of data ("signup-wizard", "upload"): it is part
	// of every key and the purpose in telemetry. Required.
	Name string
	// Namespace prefixes every key. Default: "temp".
	Namespace string
	// TTL is how long a value lives after it was last written or read:
	// every Get and Update slides it. Default: 30 minutes.
	TTL time.Duration
	// Codec encodes values inside the cache's envelope. Default:
	// codec.Msgpack().
	Codec codec.Codec
	// Schema is written into every value; bump it when T changes shape, and
	// values written with another schema read as absent. Default: 0.
	Schema uint32
	// MaxBytes refuses larger encoded values. Default: 1 MiB.
	MaxBytes int
	// Timeout bounds every Redis call. Default: 1 second.
	Timeout time.Duration
	// Breaker, if set, guards the Redis calls (see Options.Breaker).
	// Default: none.
	Breaker Breaker
	// Observer receives EventUnavailable and EventCorrupt. Default: none.
	Observer Observer
}

// TempData keeps short-lived values of type T by id (a session id, an
// upload id): multi-step form progress, upload sessions, onboarding
// wizards. Values are read many times and live until TTL after their last
// use; they are encoded like the cache's values (codec envelope, msgpack
// by default). Ids are secrets of their owners, so Redis keys hold only
// their hash. Nothing is held in process memory, and every call fails
// closed when Redis cannot be reached. It is safe for concurrent use.
type TempData[T any] struct {
	o   TempDataOptions
	rdb redis.UniversalClient
}

// NewTempData returns a TempData configured by o.
func NewTempData[T any](o *TempDataOptions) (*TempData[T], error) {
	if o == nil || o.Client == nil || o.Name == "" {
		return nil, fmt.Errorf("%w: TempData needs a Client and a Name", ErrInvalidOptions)
	}
	c := *o
	if c.Namespace == "" {
		c.Namespace = "temp"
	}
	if err := checkNamespace(c.Namespace + c.Name); err != nil {
		return nil, err
	}
	if c.TTL < 0 || c.MaxBytes < 0 || c.Timeout < 0 {
		return nil, fmt.Errorf("%w: negative TTL, MaxBytes or Timeout", ErrInvalidOptions)
	}
	if c.TTL == 0 {
		c.TTL = DefaultTempTTL
	}
	if c.MaxBytes == 0 {
		c.MaxBytes = DefaultTempMaxBytes
	}
	if c.Timeout == 0 {
		c.Timeout = DefaultTimeout
	}
	if c.Codec == nil {
		c.Codec = codec.Msgpack()
	}
	if c.Observer == nil {
		c.Observer = NoopObserver{}
	}
	return &TempData[T]{o: c, rdb: c.Client}, nil
}

func (d *TempData[T]) key(id string) string {
	h := sha256.Sum256([]byte(d.o.Name + "\x00" + id))
	return d.o.Namespace + ":" + d.o.Name + ":{" + hex.EncodeToString(h[:16]) + "}"
}

func (d *TempData[T]) encode(v T) ([]byte, error) {
	b, err := codec.Encode(d.o.Codec, codec.Header{Schema: d.o.Schema, Created: time.Now().UnixNano()}, v, 0)
	if err != nil {
		return nil, fmt.Errorf("onetime: encode %s: %w", d.o.Name, err)
	}
	if len(b) > d.o.MaxBytes {
		return nil, fmt.Errorf("%w: %d bytes, limit %d", ErrTooLarge, len(b), d.o.MaxBytes)
	}
	return b, nil
}

func (d *TempData[T]) call(ctx context.Context, f func(ctx context.Context) error) error {
	err := guard(ctx, d.o.Breaker, d.o.Timeout, f)
	if err != nil && errors.Is(err, ErrUnavailable) {
		d.o.Observer.Event(ctx, Event{Store: d.o.Namespace, Kind: EventUnavailable, Purpose: d.o.Name, Err: err})
	}
	return err
}

// Put stores v under id for TTL, replacing what was there.
func (d *TempData[T]) Put(ctx context.Context, id string, v T) error {
	b, err := d.encode(v)
	if err != nil {
		return err
	}
	return d.call(ctx, func(ctx context.Context) error { return d.rdb.Set(ctx, d.key(id), b, d.o.TTL).Err() })
}

// Get returns the value under id and slides its TTL (GETEX), or
// [ErrNotFound]. A value that does not decode (T changed without a Schema
// bump, bad bytes) is deleted and reads as not found.
func (d *TempData[T]) Get(ctx context.Context, id string) (T, error) {
	var zero T
	b, err := d.getex(ctx, d.key(id))
	if err != nil {
		return zero, err
	}
	v, ok := d.decode(ctx, id, b)
	if !ok {
		return zero, ErrNotFound
	}
	return v, nil
}

func (d *TempData[T]) getex(ctx context.Context, key string) ([]byte, error) {
	var b []byte
	err := d.call(ctx, func(ctx context.Context) error {
		var err error
		b, err = d.rdb.GetEx(ctx, key, d.o.TTL).Bytes()
		if errors.Is(err, redis.Nil) {
			return ErrNotFound
		}
		return err
	})
	if errors.Is(err, ErrNotFound) {
		return nil, ErrNotFound
	}
	return b, err
}

// decode decodes b; bad bytes are deleted (only if still the same bytes)
// and reported.
func (d *TempData[T]) decode(ctx context.Context, id string, b []byte) (T, bool) {
	var v T
	if _, err := codec.Decode(d.o.Codec, b, d.o.Schema, d.o.MaxBytes, &v); err != nil {
		d.o.Observer.Event(ctx, Event{Store: d.o.Namespace, Kind: EventCorrupt, Purpose: d.o.Name, Err: err})
		_ = d.call(ctx, func(ctx context.Context) error {
			return casScript.Run(ctx, d.rdb, []string{d.key(id)}, b, "", 0).Err()
		})
		var zero T
		return zero, false
	}
	return v, true
}

// casScript replaces the value of KEYS[1] only if it still holds ARGV[1]
// ("" for none): with ARGV[2] for ARGV[3] ms, or deletes it if ARGV[2] is
// empty. It returns 1 if it wrote, or if the key already holds ARGV[2]:
// the script ran already and its reply was lost (go-redis sent it again),
// for a value is never written twice (each carries its creation time in
// nanoseconds), so Update must not apply fn a second time.
var casScript = redis.NewScript(`
local cur = redis.call('GET', KEYS[1]) or ''
if ARGV[2] ~= '' and cur == ARGV[2] then return 1 end
if cur ~= ARGV[1] then return 0 end
if ARGV[2] == '' then
  redis.call('DEL', KEYS[1])
else
  redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
end
return 1
`)

// Update reads the value under id (found is false if there is none), lets
// fn change it, and writes the result only if the value did not change in
// between (compare and set, in one script), retrying fn if it did: two
// tabs of the same wizard cannot lose each other's steps. It returns the
// value written, fn's error, or [ErrConflict] after 16 rounds.
func (d *TempData[T]) Update(ctx context.Context, id string, fn func(v T, found bool) (T, error)) (T, error) {
	var zero T
	key := d.key(id)
	for range updateAttempts {
		cur, err := d.getex(ctx, key)
		if err != nil && !errors.Is(err, ErrNotFound) {
			return zero, err
		}
		v, found := zero, false
		if cur != nil {
			v, found = d.decode(ctx, id, cur)
			if !found {
				cur = nil
			}
		}
		nv, err := fn(v, found)
		if err != nil {
			return zero, err
		}
		b, err := d.encode(nv)
		if err != nil {
			return zero, err
		}
		var wrote int
		err = d.call(ctx, func(ctx context.Context) error {
			var err error
			wrote, err = casScript.Run(ctx, d.rdb, []string{key}, cur, b, ms(d.o.TTL)).Int()
			return err
		})
		if err != nil {
			return zero, err
		}
		if wrote == 1 {
			return nv, nil
		}
	}
	return zero, ErrConflict
}

// Delete removes the value under id.
func (d *TempData[T]) Delete(ctx context.Context, id string) error {
	return d.call(ctx, func(ctx context.Context) error { return d.rdb.Del(ctx, d.key(id)).Err() })
}
