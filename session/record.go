package session

import (
	"crypto/subtle"
	"maps"
	"strconv"
	"sync/atomic"
	"time"
)

// Session is one live session as read from Redis, shared by the requests
// that read it on this instance. Its methods are safe for concurrent use;
// it never changes except for its activity record (LastSeen). A change
// made through the Manager is seen by the next [Manager.Get], not by a
// *Session already held.
type Session struct {
	// The fields every read looks at come first, in one cache line.

	// offset is this instance's clock minus Redis's (ns), measured before
	// the read that gave seen, so deadlines computed with it are early,
	// never late; rtt is that read's round trip (ns): a touch is due no
	// sooner than seen + interval + offset + rtt, so it is never sent
	// before Redis agrees it is due.
	offset, rtt atomic.Int64
	seen        atomic.Int64 // unix µs (Redis's clock) of the last recorded activity
	absolute    int64        // unix µs, Redis's clock
	touching    atomic.Bool  // one request at a time records activity
	// verified is 2 once secret holds the token secret that matched hash
	// (1 while one request writes it); secret never changes after.
	verified atomic.Uint32
	secret   secretWords
	hash     string // the token's keyed hash (_h), from Redis

	key      string // the L1 key, "<tag>:<ref>"
	ref, tag string
	user     string
	created  int64 // unix µs, Redis's clock
	version  uint64
	device   string
	ip       string
	values   map[string]string // never changed after load
	lastIP   atomic.Pointer[string]
}

// User returns the user the session belongs to.
func (s *Session) User() string { return s.user }

// Ref returns the session's ref: the random, public part of its token
// that names it in the user's session list, the Observer and telemetry.
// It gives no access: the token's secret part does.
func (s *Session) Ref() string { return s.ref }

// Value returns the value of a field.
func (s *Session) Value(name string) (string, bool) {
	v, ok := s.values[name]
	return v, ok
}

// Values returns a copy of the session's fields.
func (s *Session) Values() map[string]string { return maps.Clone(s.values) }

// Version returns the session's version: 1 when created, one more after
// each Update. Give it to Update.IfVersion for a change that must not
// race.
func (s *Session) Version() uint64 { return s.version }

// Device returns the device recorded when the session was created.
func (s *Session) Device() string { return s.device }

// IP returns the address the session was last recorded from (when read).
func (s *Session) IP() string { return s.ip }

// Created returns when the session was created (Redis's clock).
func (s *Session) Created() time.Time { return time.UnixMicro(s.created) }

// LastSeen returns the last recorded activity (Redis's clock), at touch
// granularity.
func (s *Session) LastSeen() time.Time { return time.UnixMicro(s.seen.Load()) }

// AbsoluteDeadline returns when the session ends whatever its activity.
func (s *Session) AbsoluteDeadline() time.Time { return time.UnixMicro(s.absolute) }

// size estimates the session's memory in bytes (its L1 cost).
func (s *Session) size() int {
	n := 256 + len(s.key) + len(s.user) + len(s.device) + len(s.ip)
	for k, v := range s.values {
		n += len(k) + len(v) + 32
	}
	return n
}

// verify reports whether token (shaped, and with s's key) is s's token.
// Once a token's hash matched s.hash, s keeps its secret, and the requests
// after compare their secret with it in constant time: one hash per
// session read from Redis, none per request.
func (s *Session) verify(h *hasher, token string) bool {
	sec := secretOf(token)
	if s.verified.Load() == 2 {
		return s.secret.equal(sec)
	}
	if s.hash == "" || !equal(h.tokenHash(token), s.hash) {
		return false
	}
	if s.verified.CompareAndSwap(0, 1) {
		s.secret = wordsOf(sec)
		s.verified.Store(2)
	}
	return true
}

// secretWords holds a secret (secretLen bytes) as little-endian words,
// so that comparing one with a token's takes six word loads, not 43 byte
// loads: five words of bytes 0–39, and one of bytes 35–42.
type secretWords [6]uint64

func wordsOf(sec string) (w secretWords) {
	for i := range 5 {
		w[i] = le64(sec, 8*i)
	}
	w[5] = le64(sec, secretLen-8)
	return w
}

// equal reports whether sec (secretLen bytes) is w's secret, in a time
// that does not depend on where they differ.
func (w *secretWords) equal(sec string) bool {
	_ = sec[secretLen-1]
	// (^ and | bind alike in Go: the XORs need their parentheses.)
	v := (w[0] ^ le64(sec, 0)) | (w[1] ^ le64(sec, 8)) | (w[2] ^ le64(sec, 16)) | (w[3] ^ le64(sec, 24)) |
		(w[4] ^ le64(sec, 32)) | (w[5] ^ le64(sec, secretLen-8))
	return subtle.ConstantTimeEq(int32(v>>32|v&0xffffffff), 0) == 1
}

// le64 reads 8 bytes of s at i as a little-endian word (one load).
func le64(s string, i int) uint64 {
	s = s[i : i+8]
	return uint64(s[0]) | uint64(s[1])<<8 | uint64(s[2])<<16 | uint64(s[3])<<24 |
		uint64(s[4])<<32 | uint64(s[5])<<40 | uint64(s[6])<<48 | uint64(s[7])<<56
}

// observe records a fresh reading of the activity record: seen (Redis
// µs), and the clock relation of the read that gave it.
func (s *Session) observe(seen, offset, rtt int64) {
	for {
		cur := s.seen.Load()
		if seen < cur || s.seen.CompareAndSwap(cur, seen) {
			break
		}
	}
	s.offset.Store(offset)
	s.rtt.Store(rtt)
}

// parseSession builds a Session from a HGETALL reply.
func parseSession(key, tag, ref string, kv []any) (*Session, bool) {
	s := &Session{key: key, tag: tag, ref: ref, values: make(map[string]string, len(kv)/2)}
	var seen int64
	ok := 0
	for i := 0; i+1 < len(kv); i += 2 {
		f, _ := kv[i].(string)
		v, _ := kv[i+1].(string)
		if len(f) == 0 || f[0] != '_' {
			s.values[f] = v
			continue
		}
		switch f {
		case "_u":
			s.user = v
			ok++
		case "_c":
			s.created, _ = strconv.ParseInt(v, 10, 64)
		case "_a":
			s.absolute, _ = strconv.ParseInt(v, 10, 64)
			ok++
		case "_s":
			seen, _ = strconv.ParseInt(v, 10, 64)
			ok++
		case "_v":
			s.version, _ = strconv.ParseUint(v, 10, 64)
		case "_d":
			s.device = v
		case "_i":
			s.ip = v
		case "_h":
			s.hash = v
			ok++
		}
	}
	s.seen.Store(seen)
	return s, ok == 4
}
