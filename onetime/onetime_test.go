package onetime_test

import (
	"context"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/tiercache/tiercache/internal/redistest"
	"github.com/tiercache/tiercache/onetime"
)

var secret = []byte("0123456789abcdef0123456789abcdef")

// counter is an Observer that counts events by kind.
type counter struct {
	mu sync.Mutex
	n  map[onetime.EventKind]int
}

func (c *counter) Event(_ context.Context, e onetime.Event) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.n == nil {
		c.n = map[onetime.EventKind]int{}
	}
	c.n[e.Kind]++
}

func (c *counter) count(k onetime.EventKind) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.n[k]
}

func newStore(t *testing.T, o *onetime.Options) (*onetime.Store, *redistest.Server, *redis.Client, *counter) {
	t.Helper()
	srv := redistest.Start(t)
	rdb := srv.Client(t)
	var opts onetime.Options
	if o != nil {
		opts = *o
	}
	opts.Client = rdb
	obs := &counter{}
	opts.Observer = obs
	s, err := onetime.New(t.Context(), &opts)
	require.NoError(t, err)
	return s, srv, rdb, obs
}

func TestNew(t *testing.T) {
	t.Parallel()
	_, err := onetime.New(t.Context(), nil)
	require.ErrorIs(t, err, onetime.ErrInvalidOptions)
	srv := redistest.Start(t, "--maxmemory-policy", "allkeys-lfu")
	rdb := srv.Client(t)
	_, err = onetime.New(t.Context(), &onetime.Options{Client: rdb})
	require.ErrorIs(t, err, onetime.ErrEvictingRedis)
	_, err = onetime.New(t.Context(), &onetime.Options{Client: rdb, AllowEvictingRedis: true})
	require.NoError(t, err)
	_, err = onetime.New(t.Context(), &onetime.Options{Client: rdb, AllowEvictingRedis: true, Secret: []byte("short")})
	require.ErrorIs(t, err, onetime.ErrInvalidOptions)
	_, err = onetime.New(t.Context(), &onetime.Options{Client: rdb, AllowEvictingRedis: true, CodeDigits: 3})
	require.ErrorIs(t, err, onetime.ErrInvalidOptions)
}

func TestStore_MintConsume(t *testing.T) {
	t.Parallel()
	s, _, _, obs := newStore(t, nil)
	ctx := t.Context()
	tok, err := s.Mint(ctx, "verify-email", "user-42", time.Minute, []byte("alice@example.com"))
	require.NoError(t, err)
	raw, err := base64.RawURLEncoding.DecodeString(tok)
	require.NoError(t, err)
	require.Len(t, raw, 32, "256 random bits")

	require.NoError(t, s.Check(ctx, "verify-email", tok, "user-42"), "Check does not use it up")
	_, err = s.Consume(ctx, "reset-password", tok, "user-42")
	require.ErrorIs(t, err, onetime.ErrExpiredOrUsed, "a token is only good for its purpose")
	data, err := s.Consume(ctx, "verify-email", tok, "user-42")
	require.NoError(t, err)
	require.Equal(t, "alice@example.com", string(data))
	_, err = s.Consume(ctx, "verify-email", tok, "user-42")
	require.ErrorIs(t, err, onetime.ErrExpiredOrUsed, "used")

	for _, bad := range []string{"", "nope", strings.Repeat("A", 43) + "!", tok[:42]} {
		_, err = s.Consume(ctx, "verify-email", bad, "user-42")
		require.ErrorIs(t, err, onetime.ErrExpiredOrUsed)
	}
	require.Equal(t, 1, obs.count(onetime.EventConsumed))
}

func TestStore_WrongSubject(t *testing.T) {
	t.Parallel()
	s, _, _, obs := newStore(t, nil)
	ctx := t.Context()
	for _, consume := range []bool{true, false} {
		tok, err := s.Mint(ctx, "reset-password", "user-1", time.Minute, nil)
		require.NoError(t, err)
		if consume {
			_, err = s.Consume(ctx, "reset-password", tok, "user-2")
		} else {
			err = s.Check(ctx, "reset-password", tok, "user-2")
		}
		require.ErrorIs(t, err, onetime.ErrWrongSubject)
		_, err = s.Consume(ctx, "reset-password", tok, "user-1")
		require.ErrorIs(t, err, onetime.ErrExpiredOrUsed, "a token shown to the wrong subject is burned")
	}
	require.Equal(t, 2, obs.count(onetime.EventWrongSubject))
}

func TestStore_Expiry(t *testing.T) {
	t.Parallel()
	s, _, rdb, _ := newStore(t, nil)
	ctx := t.Context()
	tok, err := s.Mint(ctx, "p", "u", time.Hour, nil)
	require.NoError(t, err)
	keys, err := rdb.Keys(ctx, "onetime:*").Result()
	require.NoError(t, err)
	require.Len(t, keys, 1)
	ttl, err := rdb.PTTL(ctx, keys[0]).Result()
	require.NoError(t, err)
	require.InDelta(t, time.Hour, ttl, float64(time.Minute), "the TTL is set with the key")
	require.NoError(t, rdb.PExpire(ctx, keys[0], time.Millisecond).Err())
	require.Eventually(t, func() bool { return rdb.Exists(ctx, keys[0]).Val() == 0 }, 5*time.Second, time.Millisecond)
	_, err = s.Consume(ctx, "p", tok, "u")
	require.ErrorIs(t, err, onetime.ErrExpiredOrUsed)
}

// TestStore_ConcurrentConsumers: 1,000 concurrent consumers of one token,
// exactly one success.
func TestStore_ConcurrentConsumers(t *testing.T) {
	t.Parallel()
	s, _, _, _ := newStore(t, &onetime.Options{Timeout: 10 * time.Second})
	ctx := t.Context()
	tok, err := s.Mint(ctx, "magic-link", "user-7", time.Minute, []byte("data"))
	require.NoError(t, err)
	var ok, used atomic.Int32
	var wg sync.WaitGroup
	start := make(chan struct{})
	for range 1000 {
		wg.Go(func() {
			<-start
			_, err := s.Consume(ctx, "magic-link", tok, "user-7")
			switch {
			case err == nil:
				ok.Add(1)
			case errors.Is(err, onetime.ErrExpiredOrUsed):
				used.Add(1)
			default:
				t.Error(err)
			}
		})
	}
	close(start)
	wg.Wait()
	require.Equal(t, int32(1), ok.Load())
	require.Equal(t, int32(999), used.Load())
}

// TestStore_NoRawSecretsInRedis scans the namespace: no token (in any
// encoding), subject, code or carried data is found in a key or a value.
func TestStore_NoRawSecretsInRedis(t *testing.T) {
	t.Parallel()
	s, _, rdb, _ := newStore(t, &onetime.Options{Secret: secret})
	ctx := t.Context()
	const subject, data = "alice@example.com", "pkce-verifier-8f3a"
	var secrets []string
	for i := range 20 {
		tok, err := s.Mint(ctx, "verify-email", subject, time.Minute, []byte(data))
		require.NoError(t, err)
		raw, _ := base64.RawURLEncoding.DecodeString(tok)
		secrets = append(secrets, tok, string(raw), hex.EncodeToString(raw), base64.StdEncoding.EncodeToString(raw))
		if i%2 == 0 {
			_, err := s.Consume(ctx, "verify-email", tok, subject)
			require.NoError(t, err)
		}
	}
	code, err := s.MintCode(ctx, "login-sms", subject, time.Minute)
	require.NoError(t, err)
	flow, err := s.BeginOAuth(ctx, "google", "pre-login-session-1", 0)
	require.NoError(t, err)
	secrets = append(secrets, subject, data, "pre-login-session-1", flow.State)

	n := 0
	iter := rdb.Scan(ctx, 0, "*", 100).Iterator()
	for iter.Next(ctx) {
		k := iter.Val()
		n++
		var vals []string
		switch typ := rdb.Type(ctx, k).Val(); typ {
		case "string":
			vals = []string{rdb.Get(ctx, k).Val()}
		case "hash":
			for f, v := range rdb.HGetAll(ctx, k).Val() {
				vals = append(vals, f, v)
			}
		default:
			t.Fatalf("unexpected %s key %s", typ, k)
		}
		for _, sec := range secrets {
			require.NotContains(t, k, sec)
			for _, v := range vals {
				require.NotContains(t, v, sec)
			}
		}
		for _, v := range vals {
			require.NotEqual(t, code, v)
		}
	}
	require.NoError(t, iter.Err())
	require.Equal(t, 10+1+1, n, "10 live tokens, 1 code, 1 OAuth state")
}

func TestStore_Codes(t *testing.T) {
	t.Parallel()
	s, _, _, obs := newStore(t, &onetime.Options{Secret: secret, MaxAttempts: 3, Lockout: time.Minute})
	ctx := t.Context()
	code, err := s.MintCode(ctx, "verify-phone", "user-9", time.Minute)
	require.NoError(t, err)
	require.Len(t, code, 6)
	wrong := fmt.Sprintf("%06d", (atoi(code)+1)%1000000)

	err = s.ConsumeCode(ctx, "verify-phone", "user-9", wrong)
	var ae *onetime.AttemptsError
	require.ErrorAs(t, err, &ae)
	require.ErrorIs(t, err, onetime.ErrWrongCode)
	require.Equal(t, 2, ae.Remaining)
	require.ErrorIs(t, s.ConsumeCode(ctx, "verify-phone", "user-8", code), onetime.ErrExpiredOrUsed, "codes are per subject")
	require.NoError(t, s.ConsumeCode(ctx, "verify-phone", "user-9", code), "guessed wrong, then used")
	require.ErrorIs(t, s.ConsumeCode(ctx, "verify-phone", "user-9", code), onetime.ErrExpiredOrUsed, "once")

	// Three wrong codes lock the subject out, a new code included.
	code, err = s.MintCode(ctx, "verify-phone", "user-9", time.Minute)
	require.NoError(t, err)
	wrong = fmt.Sprintf("%06d", (atoi(code)+1)%1000000)
	require.ErrorIs(t, s.ConsumeCode(ctx, "verify-phone", "user-9", wrong), onetime.ErrWrongCode)
	require.ErrorIs(t, s.ConsumeCode(ctx, "verify-phone", "user-9", wrong), onetime.ErrWrongCode)
	err = s.ConsumeCode(ctx, "verify-phone", "user-9", wrong)
	require.ErrorIs(t, err, onetime.ErrTooManyAttempts)
	require.ErrorAs(t, err, &ae)
	require.True(t, ae.Locked)
	require.InDelta(t, time.Minute, ae.RetryAfter, float64(time.Second))
	require.ErrorIs(t, s.ConsumeCode(ctx, "verify-phone", "user-9", code), onetime.ErrTooManyAttempts, "the right code too")
	_, err = s.MintCode(ctx, "verify-phone", "user-9", time.Minute)
	require.ErrorIs(t, err, onetime.ErrTooManyAttempts, "no new code while locked out")
	require.Equal(t, 3, obs.count(onetime.EventWrongCode))

	// Without a secret, no codes.
	plain, _, _, _ := newStore(t, nil)
	_, err = plain.MintCode(ctx, "p", "u", time.Minute)
	require.ErrorIs(t, err, onetime.ErrInvalidOptions)
}

// TestStore_CodeAttemptsUnderConcurrency: 200 concurrent wrong guesses and
// the right code among them: at most MaxAttempts are counted, the rest are
// locked out, and the right code succeeds only if it came before the lock.
func TestStore_CodeAttemptsUnderConcurrency(t *testing.T) {
	t.Parallel()
	const limit = 5
	s, _, _, _ := newStore(t, &onetime.Options{Secret: secret, MaxAttempts: limit, Timeout: 10 * time.Second})
	ctx := t.Context()
	code, err := s.MintCode(ctx, "login", "bob", time.Minute)
	require.NoError(t, err)
	var wrong, locked, ok, gone atomic.Int32
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range 200 {
		guess := fmt.Sprintf("%06d", (atoi(code)+1+i)%1000000)
		if i == 100 {
			guess = code
		}
		wg.Go(func() {
			<-start
			err := s.ConsumeCode(ctx, "login", "bob", guess)
			switch {
			case err == nil:
				ok.Add(1)
			case errors.Is(err, onetime.ErrWrongCode):
				wrong.Add(1)
			case errors.Is(err, onetime.ErrTooManyAttempts):
				locked.Add(1)
			case errors.Is(err, onetime.ErrExpiredOrUsed):
				gone.Add(1)
			default:
				t.Error(err)
			}
		})
	}
	close(start)
	wg.Wait()
	require.Equal(t, int32(200), wrong.Load()+locked.Load()+ok.Load()+gone.Load())
	require.LessOrEqual(t, wrong.Load(), int32(limit-1), "never more than the limit of wrong guesses answered as such")
	if ok.Load() == 1 {
		// The right code came before the lockout: the record was deleted,
		// later guesses find nothing.
		require.Positive(t, gone.Load()+wrong.Load())
	} else {
		require.Equal(t, int32(limit-1), wrong.Load())
		require.Equal(t, int32(200-limit+1), locked.Load())
	}
}

func TestStore_Unavailable(t *testing.T) {
	t.Parallel()
	s, srv, _, obs := newStore(t, &onetime.Options{Secret: secret, Timeout: 200 * time.Millisecond})
	ctx := t.Context()
	tok, err := s.Mint(ctx, "p", "u", time.Minute, nil)
	require.NoError(t, err)
	srv.Kill()
	_, err = s.Consume(ctx, "p", tok, "u")
	require.ErrorIs(t, err, onetime.ErrUnavailable)
	_, err = s.Mint(ctx, "p", "u", time.Minute, nil)
	require.ErrorIs(t, err, onetime.ErrUnavailable)
	_, err = s.MintCode(ctx, "p", "u", time.Minute)
	require.ErrorIs(t, err, onetime.ErrUnavailable)
	require.ErrorIs(t, s.ConsumeCode(ctx, "p", "u", "123456"), onetime.ErrUnavailable)
	require.Equal(t, 4, obs.count(onetime.EventUnavailable))
}

func atoi(s string) int {
	n := 0
	for _, c := range s {
		n = n*10 + int(c-'0')
	}
	return n
}

// TestStore_Breaker: after DefaultBreakerFailures failed calls the breaker
// answers for Redis, without a call.
func TestStore_Breaker(t *testing.T) {
	t.Parallel()
	s, srv, _, _ := newStore(t, &onetime.Options{Secret: secret})
	srv.Kill()
	ctx := t.Context()
	for range onetime.DefaultBreakerFailures {
		_, err := s.Consume(ctx, "p", strings.Repeat("A", 43), "u")
		require.ErrorIs(t, err, onetime.ErrUnavailable)
		require.NotContains(t, err.Error(), "circuit breaker open")
	}
	_, err := s.Mint(ctx, "p", "u", time.Minute, nil)
	require.ErrorIs(t, err, onetime.ErrUnavailable)
	require.Contains(t, err.Error(), "circuit breaker open")
}

// resendOnce is a go-redis hook that runs the first command named name
// twice, as go-redis does when a command's reply is lost (a connection
// closed after Redis ran it): the caller sees only the second reply.
func resendOnce(name string) redis.Hook {
	var done atomic.Bool
	return redistest.CommandHook(func(ctx context.Context, cmd redis.Cmder, next redis.ProcessHook) error {
		if cmd.Name() == name && done.CompareAndSwap(false, true) {
			_ = next(ctx, cmd) // its reply is lost
		}
		return next(ctx, cmd)
	})
}

// TestMint_ReplyLost: a Mint whose SET ran but whose reply was lost (the
// resent SET NX finds the key) returns the stored token. Before, it failed
// with ErrUnavailable ("redis: nil") while the token sat in Redis.
func TestMint_ReplyLost(t *testing.T) {
	t.Parallel()
	s, _, rdb, _ := newStore(t, nil)
	rdb.AddHook(resendOnce("set"))
	tok, err := s.Mint(t.Context(), "verify-email", "user:1", time.Hour, []byte("d"))
	require.NoError(t, err)
	data, err := s.Consume(t.Context(), "verify-email", tok, "user:1")
	require.NoError(t, err)
	require.Equal(t, []byte("d"), data)
}

// TestMint_EmptySubject: a token, a code or an OAuth state must be bound
// to someone: an empty subject (a handler that passed the missing
// pre-login cookie as "") is refused, or any cookieless browser could
// finish a flow another one began (login CSRF).
func TestMint_EmptySubject(t *testing.T) {
	t.Parallel()
	s, _, _, _ := newStore(t, &onetime.Options{Secret: secret})
	_, err := s.Mint(t.Context(), "verify-email", "", time.Hour, nil)
	require.ErrorIs(t, err, onetime.ErrInvalidOptions)
	_, err = s.MintCode(t.Context(), "login", "", time.Minute)
	require.ErrorIs(t, err, onetime.ErrInvalidOptions)
	_, err = s.BeginOAuth(t.Context(), "google", "", 0)
	require.ErrorIs(t, err, onetime.ErrInvalidOptions)
}

// unusedBreaker is always closed and counts what it hears.
type unusedBreaker struct{ failures, unused atomic.Int32 }

func (b *unusedBreaker) Allow() bool { return true }
func (b *unusedBreaker) Success()    {}
func (b *unusedBreaker) Failure()    { b.failures.Add(1) }
func (b *unusedBreaker) Unused()     { b.unused.Add(1) }

// TestStore_CallerGoneFreesProbe: a call whose caller has left says so to
// the breaker (Unused: if it was the half-open breaker's probe, the next
// call probes at once), not nothing, which kept a half-open breaker
// refusing every call for another cool-down.
func TestStore_CallerGoneFreesProbe(t *testing.T) {
	t.Parallel()
	br := &unusedBreaker{}
	s, _, _, _ := newStore(t, &onetime.Options{Breaker: br})
	gone, cancel := context.WithCancel(t.Context())
	cancel()
	_, err := s.Mint(gone, "reset", "user-1", time.Minute, nil)
	require.ErrorIs(t, err, context.Canceled)
	require.EqualValues(t, 1, br.unused.Load())
	require.Zero(t, br.failures.Load())
}
