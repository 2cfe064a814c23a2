package onetime

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"math/big"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/tiercache/tiercache/codec"
	"github.com/tiercache/tiercache/internal/breaker"
	"github.com/tiercache/tiercache/internal/redisconf"
)

// TokenBytes is the number of random bytes in a token: 256 bits, twice the
// 128 the issue asks for, so that no birthday bound comes near.
const TokenBytes = 32

// tokenSchema is the envelope schema of a token record.
const tokenSchema = 1

// Store issues and checks single-use tokens and numeric codes. Nothing is
// held in process memory: every check is a Redis call, and every call
// fails closed. It is safe for concurrent use; it starts no goroutine.
type Store struct {
	o   Options
	rdb redis.UniversalClient
	enc codec.Codec
}

// New checks o and Redis and returns a Store. It fails with an error
// wrapping [ErrEvictingRedis] unless every Redis master has
// maxmemory-policy noeviction (see Options.AllowEvictingRedis).
func New(ctx context.Context, o *Options) (*Store, error) {
	opts, err := o.withDefaults()
	if err != nil {
		return nil, err
	}
	if err := redisconf.Startup(ctx, opts.Client, opts.AllowEvictingRedis, opts.Timeout, ErrInvalidOptions, ErrEvictingRedis, ErrUnavailable,
		"an evicted attempt counter gives a code guesser fresh attempts"); err != nil {
		return nil, err
	}
	return &Store{o: opts, rdb: opts.Client, enc: codec.Msgpack()}, nil
}

// Must is like [New] but panics on an error.
func Must(ctx context.Context, o *Options) *Store {
	s, err := New(ctx, o)
	if err != nil {
		panic(err)
	}
	return s
}

// tokenRecord is what Redis holds for a token: a hash of its subject and
// its sealed data. The token itself is only in the key, hashed.
type tokenRecord struct {
	Subject []byte `msgpack:"s"`
	Data    []byte `msgpack:"d,omitempty"`
}

// Mint issues a token for purpose and subject, valid for ttl and usable
// once. The token is 256 random bits in base64url (43 characters); Redis
// keeps only a hash of it, under which it keeps a hash of subject and data
// sealed with the token (see [Store.Consume]). purpose separates uses
// ("verify-email", "reset-password"): a token is only accepted for its own.
func (s *Store) Mint(ctx context.Context, purpose, subject string, ttl time.Duration, data []byte) (string, error) {
	if ttl < time.Millisecond {
		return "", fmt.Errorf("%w: ttl %v", ErrInvalidOptions, ttl)
	}
	if subject == "" {
		return "", fmt.Errorf("%w: empty subject (a token bound to no one is anyone's)", ErrInvalidOptions)
	}
	if len(data) > MaxDataBytes {
		return "", fmt.Errorf("%w: %d bytes of data, limit %d", ErrTooLarge, len(data), MaxDataBytes)
	}
	raw := make([]byte, TokenBytes)
	_, _ = rand.Read(raw) // crypto/rand.Read never fails (Go 1.24+).
	rec, err := codec.Encode(s.enc, codec.Header{Schema: tokenSchema},
		tokenRecord{Subject: s.subjectMAC(purpose, subject), Data: seal(raw, purpose, data)}, 0)
	if err != nil {
		return "", fmt.Errorf("onetime: encode: %w", err)
	}
	err = s.call(ctx, purpose, func(ctx context.Context) error {
		err := s.rdb.SetArgs(ctx, s.tokenKey(purpose, raw), rec, redis.SetArgs{Mode: "NX", TTL: ttl}).Err()
		if errors.Is(err, redis.Nil) {
			// NX found the key: only this very SET can have written it (256
			// random bits do not collide), sent again by go-redis after its
			// reply was lost. The token is stored.
			return nil
		}
		return err
	})
	if err != nil {
		return "", err
	}
	s.event(ctx, EventMinted, purpose, nil)
	return base64.RawURLEncoding.EncodeToString(raw), nil
}

// Consume uses token once: it is deleted whatever the outcome (GETDEL, so
// that of any number of concurrent consumers exactly one gets it), then
// its subject is compared in constant time, and its data (as given to
// Mint) is returned. Errors: [ErrExpiredOrUsed], [ErrWrongSubject] (the
// token is burned), or one wrapping [ErrUnavailable].
func (s *Store) Consume(ctx context.Context, purpose, token, subject string) ([]byte, error) {
	return s.take(ctx, purpose, token, subject, true)
}

// Check is Consume without using the token up: for a page that shows a
// form before the token is consumed by its submission. A token presented
// for the wrong subject is burned all the same.
func (s *Store) Check(ctx context.Context, purpose, token, subject string) error {
	_, err := s.take(ctx, purpose, token, subject, false)
	return err
}

func (s *Store) take(ctx context.Context, purpose, token, subject string, consume bool) ([]byte, error) {
	raw, err := base64.RawURLEncoding.DecodeString(token)
	if err != nil || len(raw) != TokenBytes {
		s.event(ctx, EventExpiredOrUsed, purpose, nil)
		return nil, ErrExpiredOrUsed
	}
	key := s.tokenKey(purpose, raw)
	var b []byte
	err = s.call(ctx, purpose, func(ctx context.Context) error {
		var err error
		if consume {
			b, err = s.rdb.GetDel(ctx, key).Bytes()
		} else {
			b, err = s.rdb.Get(ctx, key).Bytes()
		}
		if errors.Is(err, redis.Nil) {
			b, err = nil, nil
		}
		return err
	})
	if err != nil {
		return nil, err
	}
	if b == nil {
		s.event(ctx, EventExpiredOrUsed, purpose, nil)
		return nil, ErrExpiredOrUsed
	}
	var rec tokenRecord
	if _, err := codec.Decode(s.enc, b, tokenSchema, 2*MaxDataBytes, &rec); err != nil {
		s.burn(ctx, purpose, key, consume)
		s.event(ctx, EventCorrupt, purpose, err)
		return nil, ErrExpiredOrUsed
	}
	if subtle.ConstantTimeCompare(rec.Subject, s.subjectMAC(purpose, subject)) != 1 {
		s.burn(ctx, purpose, key, consume)
		s.event(ctx, EventWrongSubject, purpose, nil)
		return nil, ErrWrongSubject
	}
	data, err := unseal(raw, purpose, rec.Data)
	if err != nil {
		s.event(ctx, EventCorrupt, purpose, err)
		return nil, ErrExpiredOrUsed
	}
	if consume {
		s.event(ctx, EventConsumed, purpose, nil)
	}
	return data, nil
}

// burn deletes a token that Check refused (Consume already deleted it).
func (s *Store) burn(ctx context.Context, purpose, key string, consumed bool) {
	if consumed {
		return
	}
	_ = s.call(ctx, purpose, func(ctx context.Context) error { return s.rdb.Del(ctx, key).Err() })
}

// codeMintScript stores a code's hash unless the subject is locked out.
// KEYS[1] the record; ARGV: code hash, ttl ms. Reply {outcome, ms}: ok, or
// locked with the lockout left. Wrong attempts already counted stay counted.
var codeMintScript = redis.NewScript(`
if redis.call('HGET', KEYS[1], 'l') == '1' then
  return {'locked', redis.call('PTTL', KEYS[1])}
end
redis.call('HSET', KEYS[1], 'h', ARGV[1])
local ttl = tonumber(ARGV[2])
if redis.call('PTTL', KEYS[1]) < ttl then redis.call('PEXPIRE', KEYS[1], ttl) end
return {'ok', 0}
`)

// codeConsumeScript checks a code in one step: KEYS[1] the record; ARGV:
// candidate hash, max attempts, lockout ms. Reply {outcome, n}: ok (the
// record is deleted), wrong (n attempts left), locked (n ms of lockout
// left), none. The hashes are compared in constant time.
var codeConsumeScript = redis.NewScript(`
local v = redis.call('HMGET', KEYS[1], 'h', 'a', 'l')
if v[3] == '1' then return {'locked', redis.call('PTTL', KEYS[1])} end
if not v[1] then return {'none', 0} end
local want, got = v[1], ARGV[1]
local d = 0
if #want ~= #got then d = 1 end
for i = 1, #got do
  d = bit.bor(d, bit.bxor(string.byte(want, i) or 0, string.byte(got, i)))
end
if d == 0 then
  redis.call('DEL', KEYS[1])
  return {'ok', 0}
end
local a = (tonumber(v[2]) or 0) + 1
local limit = tonumber(ARGV[2])
if a >= limit then
  redis.call('DEL', KEYS[1])
  redis.call('HSET', KEYS[1], 'l', '1', 'a', a)
  redis.call('PEXPIRE', KEYS[1], ARGV[3])
  return {'locked', tonumber(ARGV[3])}
end
redis.call('HSET', KEYS[1], 'a', a)
return {'wrong', limit - a}
`)

// MintCode issues a numeric code of Options.CodeDigits digits for purpose
// and subject (an email verification, a login by SMS), valid for ttl and
// replacing the subject's previous code for the purpose. Redis keeps only
// its HMAC. Wrong attempts are counted per subject and purpose across
// codes, until a code is used or the record expires; a locked-out subject
// gets an [*AttemptsError] matching [ErrTooManyAttempts].
func (s *Store) MintCode(ctx context.Context, purpose, subject string, ttl time.Duration) (string, error) {
	if len(s.o.Secret) == 0 {
		return "", fmt.Errorf("%w: codes need Options.Secret (a reader of Redis could try every code against an unkeyed hash)", ErrInvalidOptions)
	}
	if ttl < time.Millisecond {
		return "", fmt.Errorf("%w: ttl %v", ErrInvalidOptions, ttl)
	}
	if subject == "" {
		return "", fmt.Errorf("%w: empty subject", ErrInvalidOptions)
	}
	n, _ := rand.Int(rand.Reader, new(big.Int).Exp(big.NewInt(10), big.NewInt(int64(s.o.CodeDigits)), nil))
	code := fmt.Sprintf("%0*d", s.o.CodeDigits, n)
	var rep []any
	err := s.call(ctx, purpose, func(ctx context.Context) error {
		var err error
		rep, err = codeMintScript.Run(ctx, s.rdb, []string{s.codeKey(purpose, subject)}, s.codeMAC(purpose, subject, code), ms(ttl)).Slice()
		return err
	})
	if err != nil {
		return "", err
	}
	if out, left := reply(rep); out == "locked" {
		s.event(ctx, EventLocked, purpose, nil)
		return "", &AttemptsError{Locked: true, RetryAfter: time.Duration(left) * time.Millisecond}
	}
	s.event(ctx, EventMinted, purpose, nil)
	return code, nil
}

// ConsumeCode checks code for purpose and subject in one atomic step: a
// match uses it up; a mismatch counts an attempt and returns an
// [*AttemptsError] (ErrWrongCode with the attempts left, or
// ErrTooManyAttempts once they are used up, which locks the subject out
// for Options.Lockout). No code: [ErrExpiredOrUsed].
func (s *Store) ConsumeCode(ctx context.Context, purpose, subject, code string) error {
	if len(s.o.Secret) == 0 {
		return fmt.Errorf("%w: codes need Options.Secret", ErrInvalidOptions)
	}
	var rep []any
	err := s.call(ctx, purpose, func(ctx context.Context) error {
		var err error
		rep, err = codeConsumeScript.Run(ctx, s.rdb, []string{s.codeKey(purpose, subject)},
			s.codeMAC(purpose, subject, code), s.o.MaxAttempts, ms(s.o.Lockout)).Slice()
		return err
	})
	if err != nil {
		return err
	}
	switch out, n := reply(rep); out {
	case "ok":
		s.event(ctx, EventConsumed, purpose, nil)
		return nil
	case "wrong":
		s.event(ctx, EventWrongCode, purpose, nil)
		return &AttemptsError{Remaining: int(n)}
	case "locked":
		s.event(ctx, EventLocked, purpose, nil)
		return &AttemptsError{Locked: true, RetryAfter: time.Duration(n) * time.Millisecond}
	default:
		s.event(ctx, EventExpiredOrUsed, purpose, nil)
		return ErrExpiredOrUsed
	}
}

func reply(rep []any) (string, int64) {
	if len(rep) != 2 {
		return "", 0
	}
	out, _ := rep[0].(string)
	n, _ := rep[1].(int64)
	return out, n
}

// mac is HMAC-SHA256 under Options.Secret (SHA-256 without one) of the
// length-prefixed parts.
func (s *Store) mac(parts ...[]byte) []byte {
	var h interface {
		Write([]byte) (int, error)
		Sum([]byte) []byte
	}
	if len(s.o.Secret) > 0 {
		h = hmac.New(sha256.New, s.o.Secret)
	} else {
		h = sha256.New()
	}
	var n [8]byte
	for _, p := range parts {
		binary.BigEndian.PutUint64(n[:], uint64(len(p)))
		_, _ = h.Write(n[:])
		_, _ = h.Write(p)
	}
	return h.Sum(nil)
}

func (s *Store) tokenKey(purpose string, raw []byte) string {
	return s.o.Namespace + ":t:{" + hex.EncodeToString(s.mac([]byte("token"), []byte(purpose), raw)[:16]) + "}"
}

func (s *Store) codeKey(purpose, subject string) string {
	return s.o.Namespace + ":c:{" + hex.EncodeToString(s.mac([]byte("code subject"), []byte(purpose), []byte(subject))[:16]) + "}"
}

func (s *Store) subjectMAC(purpose, subject string) []byte {
	return s.mac([]byte("subject"), []byte(purpose), []byte(subject))
}

func (s *Store) codeMAC(purpose, subject, code string) string {
	return hex.EncodeToString(s.mac([]byte("code"), []byte(purpose), []byte(subject), []byte(code)))
}

// call runs one Redis round trip under Options.Timeout and the breaker.
func (s *Store) call(ctx context.Context, purpose string, f func(ctx context.Context) error) error {
	err := guard(ctx, s.o.Breaker, s.o.Timeout, f)
	if err != nil && errors.Is(err, ErrUnavailable) {
		s.event(ctx, EventUnavailable, purpose, err)
	}
	return err
}

// guard runs f under timeout and breaker b; failures to reach Redis wrap
// ErrUnavailable, the caller's own cancellation is returned as such.
func guard(ctx context.Context, b Breaker, timeout time.Duration, f func(ctx context.Context) error) error {
	if b != nil && !b.Allow() {
		return fmt.Errorf("%w: circuit breaker open", ErrUnavailable)
	}
	cctx, cancel := context.WithTimeout(ctx, timeout)
	err := f(cctx)
	cancel()
	if err == nil {
		if b != nil {
			b.Success()
		}
		return nil
	}
	if ctx.Err() != nil {
		// The caller gave up; if the call was a half-open breaker's probe,
		// the next call probes at once.
		breaker.Forget(b)
		return fmt.Errorf("onetime: %w", context.Cause(ctx))
	}
	if b != nil {
		var re redis.Error
		if errors.As(err, &re) {
			b.Success() // Redis answered, with an error
		} else {
			b.Failure()
		}
	}
	return fmt.Errorf("%w: %w", ErrUnavailable, err)
}

func (s *Store) event(ctx context.Context, k EventKind, purpose string, err error) {
	s.o.Observer.Event(ctx, Event{Store: s.o.Name, Kind: k, Purpose: purpose, Err: err})
}

func ms(d time.Duration) int64 { return max(1, d.Milliseconds()) }
