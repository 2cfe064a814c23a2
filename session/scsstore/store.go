package scsstore

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/tiercache/tiercache/backends/goredis"
	"github.com/tiercache/tiercache/internal/keyhash"
	"github.com/tiercache/tiercache/tier"
)

// Defaults of [Options].
const (
	DefaultNamespace = "scs"
	DefaultL1TTL     = time.Minute
	DefaultTimeout   = 200 * time.Millisecond
)

// ErrSecret is returned by [New] for an Options.Secret shorter than 16
// bytes.
var ErrSecret = errors.New("scsstore: Secret must be at least 16 bytes")

// Options configures a [Store]. New copies it; later changes have no
// effect.
type Options struct {
	// Client is the Redis client (single node, Sentinel or Cluster), with
	// ContextTimeoutEnabled (so that Timeout bounds every call). It stays
	// the caller's: Close does not close it. Required.
	Client redis.UniversalClient
	// Invalidator carries Commit and Delete to the other instances (an
	// *invalidate.Bus, running). Nil means a single instance: other
	// instances would serve a deleted session for up to L1TTL.
	Invalidator tier.Invalidator
	// Secret keys the HMAC that tokens are stored under; the same on every
	// instance. At least 16 bytes. Required.
	Secret []byte
	// Namespace prefixes the Redis keys. Default: "scs".
	Namespace string
	// L1TTL is how long an instance keeps a session in process memory
	// before reading Redis again, whatever the bus says. Default: 1 min.
	L1TTL time.Duration
	// L1MaxCost bounds the process memory the sessions take, in bytes.
	// Default: tier's (64 MiB).
	L1MaxCost int64
	// Timeout bounds every Redis call. Default: 200 ms.
	Timeout time.Duration
	// CacheObserver hears of the L1 cache's work (a tier.Observer, such as
	// the otel package's). Default: none.
	CacheObserver tier.Observer
}

// Store is an scs Store and CtxStore over a two-tier cache. Create it with
// [New] and Close it when done. It is safe for concurrent use.
type Store struct {
	c  *tier.Cache[[]byte]
	kh *keyhash.Hasher
}

// New returns a Store configured by o.
func New(o *Options) (*Store, error) {
	if o == nil || o.Client == nil {
		return nil, errors.New("scsstore: Options.Client is required")
	}
	if len(o.Secret) < 16 {
		return nil, ErrSecret
	}
	c := *o
	if c.Namespace == "" {
		c.Namespace = DefaultNamespace
	}
	if c.L1TTL == 0 {
		c.L1TTL = DefaultL1TTL
	}
	if c.Timeout == 0 {
		c.Timeout = DefaultTimeout
	}
	if c.L1TTL < 0 || c.Timeout < 0 || c.L1MaxCost < 0 {
		return nil, errors.New("scsstore: L1TTL, Timeout and L1MaxCost must not be negative")
	}
	l2, err := goredis.New(c.Client, nil)
	if err != nil {
		return nil, fmt.Errorf("scsstore: %w", err)
	}
	cache, err := tier.New(&tier.Options[[]byte]{
		Name:        "scs",
		Namespace:   c.Namespace,
		L2:          l2,
		Invalidator: c.Invalidator,
		L1TTL:       c.L1TTL,
		L1MaxCost:   c.L1MaxCost,
		L2Timeout:   c.Timeout,
		// scs gives each commit its expiry: keep it exact.
		Jitter:   tier.NoJitter,
		Observer: c.CacheObserver,
	})
	if err != nil {
		return nil, fmt.Errorf("scsstore: %w", err)
	}
	return &Store{c: cache, kh: keyhash.New(c.Secret)}, nil
}

// Must is like [New] but panics on an error.
func Must(o *Options) *Store {
	s, err := New(o)
	if err != nil {
		panic(err)
	}
	return s
}

// Close releases the Store's L1 and unregisters it from the bus. It is
// idempotent. The Redis client and the bus stay the caller's.
func (s *Store) Close() error { return s.c.Close() }

// Cache returns the two-tier cache (for its Stats; do not write to it).
func (s *Store) Cache() *tier.Cache[[]byte] { return s.c }

// key returns what token is stored under: base64url of its HMAC.
func (s *Store) key(token string) string { return s.kh.Base64("", token, keyhash.Size) }

// Find returns the data of token (scs's Store.Find).
func (s *Store) Find(token string) ([]byte, bool, error) {
	return s.FindCtx(context.Background(), token)
}

// FindCtx returns the data of token: from L1 when this instance holds it,
// else from Redis. An unknown or expired token is not found (found false,
// err nil); err is a Redis failure (matching tier.ErrL2).
//
// NOTE: the bytes are shared with the other readers of the token: do not
// change them (scs only decodes them).
func (s *Store) FindCtx(ctx context.Context, token string) ([]byte, bool, error) {
	if token == "" {
		return nil, false, nil
	}
	b, err := s.c.Get(ctx, s.key(token))
	switch {
	case err == nil:
		return b, true, nil
	case errors.Is(err, tier.ErrNotFound):
		return nil, false, nil
	}
	return nil, false, fmt.Errorf("scsstore: find: %w", err)
}

// Commit stores the data of token until expiry (scs's Store.Commit).
func (s *Store) Commit(token string, b []byte, expiry time.Time) error {
	return s.CommitCtx(context.Background(), token, b, expiry)
}

// CommitCtx stores b as the data of token until expiry, in Redis and in
// L1, and tells the other instances to drop their copies. An expiry in
// the past deletes the token.
func (s *Store) CommitCtx(ctx context.Context, token string, b []byte, expiry time.Time) error {
	ttl := time.Until(expiry)
	if ttl <= 0 {
		return s.DeleteCtx(ctx, token)
	}
	// scs hands over a fresh encoding, but L1 keeps what it is given:
	// copy, so that no caller can change a shared value.
	if err := s.c.Set(ctx, s.key(token), slices.Clone(b), ttl); err != nil {
		return fmt.Errorf("scsstore: commit: %w", err)
	}
	return nil
}

// Delete removes token (scs's Store.Delete); an unknown token is not an
// error.
func (s *Store) Delete(token string) error {
	return s.DeleteCtx(context.Background(), token)
}

// DeleteCtx removes token from Redis and L1 and tells the other instances
// to drop their copies.
func (s *Store) DeleteCtx(ctx context.Context, token string) error {
	if err := s.c.Delete(ctx, s.key(token)); err != nil {
		return fmt.Errorf("scsstore: delete: %w", err)
	}
	return nil
}
