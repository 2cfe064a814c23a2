package session

import (
	"crypto/rand"
	"encoding/base64"
	mrand "math/rand/v2"
	"strings"
	"sync/atomic"

	"github.com/tiercache/tiercache/internal/keyhash"
)

// A token is "<user tag>.<secret>":
//
//   - the user tag is 12 bytes of HMAC-SHA256(Secret, user), base64url (16
//     characters). It is the hash tag of the user's keys in Redis, so all
//     of one user's sessions and their index share a Cluster slot, and a
//     token finds its keys without a lookup. It names no one: it is a
//     keyed hash, and the same for all of the user's sessions.
//   - the secret is 32 bytes from crypto/rand (256 bits), base64url (43
//     characters): OWASP asks for at least 64 bits of entropy.
//
// Redis never sees a token: a session is stored under its ref, 16 bytes of
// HMAC-SHA256(Secret, token), and the ref is also what the bus, the index,
// the Observer and telemetry carry. A ref cannot be turned back into a
// token, so the device list may show refs to the user.
const (
	tagBytes    = 12
	tagLen      = 16 // base64url of tagBytes
	secretBytes = 32
	secretLen   = 43 // base64url of secretBytes
	tokenLen    = tagLen + 1 + secretLen
	refBytes    = 16
	refLen      = 22
	keyLen      = tagLen + 1 + refLen // the L1 (and bus) key: "<tag>:<ref>"
)

// hasher computes keyed hashes with HMAC-SHA256 under the Manager's
// secret, with a domain byte first so that a user and a token never hash
// alike. It is safe for concurrent use.
type hasher struct{ kh *keyhash.Hasher }

func newHasher(secret []byte) *hasher { return &hasher{kh: keyhash.New(secret)} }

// The domains: the first bytes hashed (the same as before the hasher was
// shared, so refs and tags do not change).
const (
	domainUser  = "u\x00"
	domainToken = "s\x00"
)

// userTag returns the hash tag of a user's keys.
func (h *hasher) userTag(user string) string { return h.kh.Base64(domainUser, user, tagBytes) }

// ref returns the ref of a token: what Redis, the bus and telemetry know
// it by.
func (h *hasher) ref(token string) string { return h.kh.Base64(domainToken, token, refBytes) }

// newToken returns a fresh token for the user whose tag is given.
func newToken(tag string) string {
	var b [secretBytes]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails (Go 1.24+).
	return tag + "." + base64.RawURLEncoding.EncodeToString(b[:])
}

// wellFormed reports whether token has the shape newToken gives.
func wellFormed(token string) bool {
	if len(token) != tokenLen || token[tagLen] != '.' {
		return false
	}
	for i := 0; i < len(token); i++ {
		if i == tagLen {
			continue
		}
		if c := token[i]; !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}

// keyOf returns the L1 key of a token, "<tag>:<ref>".
func (h *hasher) keyOf(token string) string { return token[:tagLen] + ":" + h.ref(token) }

// splitKey returns the tag and ref of an L1 key.
func splitKey(key string) (tag, ref string, ok bool) {
	tag, ref, ok = strings.Cut(key, ":")
	return tag, ref, ok && len(tag) == tagLen && len(ref) == refLen
}

// keys names the Redis keys of a namespace. Every key of one user carries
// the user's tag as its hash tag:
//
//	<namespace>:{u:<tag>}:s:<ref>   a session (HASH)
//	<namespace>:{u:<tag>}:i         the user's index of sessions (HASH)
type keys struct{ ns string }

func (k keys) session(tag, ref string) string { return k.ns + ":{u:" + tag + "}:s:" + ref }
func (k keys) index(tag string) string        { return k.ns + ":{u:" + tag + "}:i" }

// memo remembers the L1 key of recently seen tokens, so that a request
// whose session is in L1 costs no HMAC (about a microsecond): eight bytes
// of the token pick a set, and one string comparison finds it. It is
// set-associative (memoWays entries per set) and lossy: a token whose set
// is full replaces a random entry of it, which costs that entry's token
// one HMAC on its next request. It is lock free, bounded
// (memoSets*memoWays tokens), and holds tokens only in process memory. It
// is safe for concurrent use.
//
// A direct-mapped table (one entry per hash) made every pair of live
// tokens that shared a slot evict each other on every request: with 1,024
// sessions about 6% of reads paid an HMAC and three allocations, which
// made a parallel read 2.3x an L1 hit of tier (the garbage's GC work hit
// every core). Four ways make that rare (a fifth live token in one set)
// and random replacement keeps it from thrashing when it happens.
type memo struct {
	sets []memoSet
}

const (
	memoWays    = 4
	memoSetBits = 12
	memoSets    = 1 << memoSetBits // 16,384 tokens, 256 KiB
)

// memoSet is one set, one cache line: a fingerprint of each way's token,
// so that a lookup follows only the way that may match. A fingerprint and
// its entry are written separately: a reader that sees a fingerprint with
// another token's entry compares the token, finds no match, and computes
// the HMAC.
type memoSet struct {
	fp [memoWays]atomic.Uint32 // 0: empty
	e  [memoWays]atomic.Pointer[memoEntry]
	_  [64 - memoWays*4 - memoWays*8]byte
}

type memoEntry struct{ token, key string }

func newMemo() *memo { return &memo{sets: make([]memoSet, memoSets)} }

// set returns token's set and fingerprint, or false for a token that is
// not the length of one. It hashes nothing: a token's secret is 256 bits
// from crypto/rand, so eight of its characters (48 random bits, mixed by
// one multiplication) spread tokens evenly. Only tokens of sessions found
// to exist are put, and those were all drawn by newToken: a made-up token
// cannot pick a set to push live ones out.
func (m *memo) set(token string) (*memoSet, uint32, bool) {
	if len(token) != tokenLen {
		return nil, 0, false
	}
	b := token[tagLen+1 : tagLen+9]
	h := (uint64(b[0]) | uint64(b[1])<<8 | uint64(b[2])<<16 | uint64(b[3])<<24 |
		uint64(b[4])<<32 | uint64(b[5])<<40 | uint64(b[6])<<48 | uint64(b[7])<<56) * 0x9e3779b97f4a7c15
	return &m.sets[h>>(64-memoSetBits)], uint32(h>>20) | 1, true
}

func (m *memo) get(token string) (string, bool) {
	s, fp, ok := m.set(token)
	if !ok {
		return "", false
	}
	for i := range s.fp {
		if s.fp[i].Load() == fp {
			if e := s.e[i].Load(); e != nil && e.token == token {
				return e.key, true
			}
		}
	}
	return "", false
}

func (m *memo) put(token, key string) {
	s, fp, ok := m.set(token)
	if !ok {
		return
	}
	w := -1
	for i := range s.fp {
		switch f := s.fp[i].Load(); {
		case f == fp:
			if e := s.e[i].Load(); e != nil && e.token == token {
				return
			}
		case f == 0 && w < 0:
			w = i
		}
	}
	if w < 0 {
		w = mrand.IntN(memoWays)
	}
	// One allocation for both strings: a lookup reads them together.
	buf := token + key
	s.e[w].Store(&memoEntry{token: buf[:len(token)], key: buf[len(token):]})
	s.fp[w].Store(fp)
}

// forget removes token, so that a token that was revoked or renewed stops
// taking a way.
func (m *memo) forget(token string) {
	s, fp, ok := m.set(token)
	if !ok {
		return
	}
	for i := range s.fp {
		if s.fp[i].Load() != fp {
			continue
		}
		if e := s.e[i].Load(); e != nil && e.token == token && s.e[i].CompareAndSwap(e, nil) {
			s.fp[i].CompareAndSwap(fp, 0)
		}
	}
}
