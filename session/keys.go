package session

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"hash"
	"hash/maphash"
	"strings"
	"sync"
	"sync/atomic"
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
// secret. It is safe for concurrent use.
type hasher struct {
	pool sync.Pool // of hash.Hash
}

func newHasher(secret []byte) *hasher {
	key := append([]byte(nil), secret...)
	h := &hasher{}
	h.pool.New = func() any { return hmac.New(sha256.New, key) }
	return h
}

// sum returns base64url(HMAC(domain || s)[:n]).
func (h *hasher) sum(domain byte, s string, n int) string {
	m := h.pool.Get().(hash.Hash)
	m.Reset()
	m.Write([]byte{domain, 0})
	m.Write([]byte(s))
	var sum [sha256.Size]byte
	m.Sum(sum[:0])
	h.pool.Put(m)
	return base64.RawURLEncoding.EncodeToString(sum[:n])
}

// userTag returns the hash tag of a user's keys.
func (h *hasher) userTag(user string) string { return h.sum('u', user, tagBytes) }

// ref returns the ref of a token: what Redis, the bus and telemetry know
// it by.
func (h *hasher) ref(token string) string { return h.sum('s', token, refBytes) }

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
// whose session is in L1 costs no HMAC (about a microsecond): one maphash
// and one string comparison instead. It is direct-mapped and lossy (a
// colliding token replaces the entry; it costs that token an HMAC), lock
// free, bounded, and holds tokens only in process memory. It is safe for
// concurrent use.
type memo struct {
	seed  maphash.Seed
	slots []atomic.Pointer[memoEntry]
	mask  uint64
}

type memoEntry struct{ token, key string }

const memoSlots = 1 << 14

func newMemo() *memo {
	return &memo{seed: maphash.MakeSeed(), slots: make([]atomic.Pointer[memoEntry], memoSlots), mask: memoSlots - 1}
}

func (m *memo) get(token string) (string, bool) {
	if e := m.slots[maphash.String(m.seed, token)&m.mask].Load(); e != nil && e.token == token {
		return e.key, true
	}
	return "", false
}

func (m *memo) put(token, key string) {
	m.slots[maphash.String(m.seed, token)&m.mask].Store(&memoEntry{token: token, key: key})
}

// forget removes token, so that a token that was revoked or renewed stops
// taking a slot.
func (m *memo) forget(token string) {
	s := &m.slots[maphash.String(m.seed, token)&m.mask]
	if e := s.Load(); e != nil && e.token == token {
		s.CompareAndSwap(e, nil)
	}
}
