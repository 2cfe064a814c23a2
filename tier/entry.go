package tier

// entry.go: how values become L1 entries and L2 envelopes, and back.

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/fnv"
	"reflect"
	"strconv"
	"time"

	"github.com/tiercache/tiercache/codec"
)

// errStaleTag reports an L2 value older than an invalidation of one of its
// tags; it is a miss, and the value may be replaced.
var errStaleTag = errors.New("tier: value older than a tag invalidation")

// errExpired reports an L2 value past its fresh life but not past its
// fail-safe deadline: a miss, but one that may stand in for a failed load.
var errExpired = errors.New("tier: value past its fresh life")

// encode builds the L2 envelope of a value read (or loaded) at created,
// fresh for ttl and kept FailSafe longer, and refuses it if it is too large.
func (c *Cache[V]) encode(v V, negative bool, created int64, ttl time.Duration) ([]byte, error) {
	now := c.now()
	h := codec.Header{Codec: c.o.Codec.ID(), Schema: c.tag, Created: created, SoftExpiry: now + int64(ttl), Deadline: now + int64(ttl+c.o.FailSafe)}
	if negative {
		h.Flags |= codec.FlagNegative
	}
	enc, err := codec.Encode(c.o.Codec, h, v, c.o.CompressAbove)
	if err == nil && len(enc) > c.o.MaxValueBytes {
		err = &ValueTooLargeError{Size: len(enc), Limit: c.o.MaxValueBytes}
	}
	return enc, err
}

// newEntry returns the L1 entry of a value read at start, fresh for ttl.
func (c *Cache[V]) newEntry(v V, negative bool, tags []string, start, now int64, ttl time.Duration) *Entry[V] {
	e := &Entry[V]{Value: v, Negative: negative, Tags: tags, Created: start}
	c.setTimes(e, now, ttl)
	return e
}

// setTimes sets e's fresh life (ttl from now), its fail-safe deadline and
// its refresh-ahead time.
func (c *Cache[V]) setTimes(e *Entry[V], now int64, ttl time.Duration) {
	e.Fresh, e.Deadline = now+int64(ttl), now+int64(ttl+c.o.FailSafe)
	if c.o.RefreshAhead > 0 && !e.Negative {
		e.RefreshAt = now + int64(float64(ttl)*c.o.RefreshAhead)
	}
}

// sizeOf is the length of e's encoding: known for the entries the read
// path makes, measured again for the others (a Set's).
func (c *Cache[V]) sizeOf(e *Entry[V]) int {
	if e.size > 0 {
		return e.size
	}
	enc, err := c.encode(e.Value, e.Negative, e.Created, time.Second)
	if err != nil {
		return 0
	}
	return len(enc)
}

// fromL2 turns b, read from L2 under key for a read that began at start,
// into an L1 entry, checked against the invalidation times of tags: those
// read from L2 with it (tagAt, the invalidators' clocks) and those this
// instance heard of; the value's creation time is the writer's clock, so
// both allow MaxClockSkew. Single and batch reads share it. It returns:
//
//   - e, nil: a hit (counted in Stats.L2Hits);
//   - e, errExpired: a value past its fresh life but within its fail-safe
//     deadline, which may stand in for a failed load;
//   - nil, ErrNotFound: a value past its deadline;
//   - nil, errStaleTag: a value older than an invalidation of one of tags;
//   - nil, an error matching ErrCorrupt: bad bytes, reported
//     ([EventDecodeError]); the caller deletes the key.
func (c *Cache[V]) fromL2(ctx context.Context, key string, tags []string, b []byte, tagAt []int64, start int64) (*Entry[V], error) {
	e := &Entry[V]{Created: start, size: len(b)}
	h, err := codec.Decode(c.o.Codec, b, c.tag, c.o.MaxValueBytes, &e.Value)
	if err != nil {
		c.ctr.decodeErrors.Add(1)
		c.obs.Event(ctx, Event{Cache: c.o.Name, Kind: EventDecodeError, Key: c.obsKey(key), Tier: TierL2, Err: err})
		return nil, fmt.Errorf("%w: %w", ErrCorrupt, err)
	}
	now := c.now()
	e.Negative = h.Flags&codec.FlagNegative != 0
	if h.SoftExpiry <= now {
		if now >= h.Deadline || c.o.FailSafe == 0 {
			return nil, ErrNotFound
		}
		e.Fresh, e.Deadline = h.SoftExpiry, h.Deadline
		err = errExpired
	} else {
		c.setTimes(e, now, time.Duration(min(h.SoftExpiry-now, int64(c.jitter(c.o.L1TTL)))))
		e.Deadline = min(e.Deadline, max(e.Fresh, h.Deadline))
	}
	if len(tags) > 0 {
		skew := int64(c.o.MaxClockSkew)
		for _, at := range tagAt {
			if at > 0 && h.Created <= at+skew {
				return nil, errStaleTag
			}
		}
		if !c.tags.validWithin(tags, h.Created, skew) {
			return nil, errStaleTag
		}
	}
	e.Tags = tags
	if err == nil {
		c.ctr.l2Hits.Add(1)
	}
	return e, err
}

// typeTag is the schema tag of a Cache[V]'s L2 envelopes: an FNV-1a hash of
// V's name and schema, so that values of another type, or of another
// schema, are refused as bad bytes instead of decoded into a zero value.
func typeTag[V any](schema uint32) uint32 {
	h := fnv.New32a()
	h.Write([]byte(typeName(reflect.TypeFor[V]())))
	var b [4]byte
	binary.LittleEndian.PutUint32(b[:], schema)
	h.Write(b[:])
	return h.Sum32()
}

// typeName names t with full package paths, pointers aside (a *T and a T
// encode alike).
func typeName(t reflect.Type) string {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if t.Name() != "" {
		if t.PkgPath() == "" {
			return t.Name() // predeclared
		}
		return t.PkgPath() + "." + t.Name()
	}
	switch t.Kind() {
	case reflect.Slice:
		return "[]" + typeName(t.Elem())
	case reflect.Array:
		return "[" + strconv.Itoa(t.Len()) + "]" + typeName(t.Elem())
	case reflect.Map:
		return "map[" + typeName(t.Key()) + "]" + typeName(t.Elem())
	default:
		return t.String() // struct literals and the rest: as Go prints them
	}
}
