package session

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"strings"

	"github.com/tiercache/tiercache/internal/keyhash"
)

// A token is "<tag>:<ref>.<secret>", and its first part, "<tag>:<ref>",
// is the session's L1 (and bus) key, so that a read finds the session
// with no hash and no lookup:
//
//   - the user tag is 12 bytes of HMAC-SHA256(Secret, user), base64url (16
//     characters). It is the hash tag of the user's keys in Redis, so all
//     of one user's sessions and their index share a Cluster slot, and a
//     token finds its keys without a lookup. It names no one: it is a
//     keyed hash, and the same for all of the user's sessions.
//   - the ref is 16 bytes from crypto/rand (128 bits), base64url (22
//     characters): the session's public name, under which Redis stores it
//     and which the bus, the index, the Observer and telemetry carry. It
//     is not a credential: knowing a ref (the device list shows them)
//     gives no access.
//   - the secret is 32 bytes from crypto/rand (256 bits), base64url (43
//     characters): what authenticates. OWASP asks for at least 64 bits
//     of entropy.
//
// Redis never sees a token nor its secret: a session stores the keyed
// hash of its token, HMAC-SHA256(Secret, token) (field _h), which every
// write compares in its script. A read compares the token's secret in
// constant time with the one this instance verified against _h the first
// time it read the session (see Session.verify): no hash per read. The
// verified secret lives only in process memory, in the L1 copy of the
// session, and goes with it.
const (
	tagBytes    = 12
	tagLen      = 16 // base64url of tagBytes
	refBytes    = 16
	refLen      = 22                  // base64url of refBytes
	keyLen      = tagLen + 1 + refLen // the L1 (and bus) key: "<tag>:<ref>"
	secretBytes = 32
	secretLen   = 43 // base64url of secretBytes
	tokenLen    = keyLen + 1 + secretLen
	hashBytes   = 32 // of the stored token hash (_h)
)

// hasher computes keyed hashes with HMAC-SHA256 under the Manager's
// secret, with a domain byte first so that a user and a token never hash
// alike. It is safe for concurrent use.
type hasher struct{ kh *keyhash.Hasher }

func newHasher(secret []byte) *hasher { return &hasher{kh: keyhash.New(secret)} }

// The domains: the first bytes hashed.
const (
	domainUser  = "u\x00"
	domainToken = "t\x00"
)

// userTag returns the hash tag of a user's keys.
func (h *hasher) userTag(user string) string { return h.kh.Base64(domainUser, user, tagBytes) }

// tokenHash returns the hash of a token that its session stores (_h).
func (h *hasher) tokenHash(token string) string { return h.kh.Base64(domainToken, token, hashBytes) }

// random returns n bytes from crypto/rand, base64url.
func random(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b) // crypto/rand.Read never fails (Go 1.24+).
	return base64.RawURLEncoding.EncodeToString(b)
}

// newToken returns a fresh token, with a fresh ref, for the user whose tag
// is given.
func newToken(tag string) string {
	return tag + ":" + random(refBytes) + "." + random(secretBytes)
}

// shaped reports whether token has a token's length and separators: all
// a read checks before it looks the key up in L1 (a key found there is
// well formed, and a secret that is not is refused by the comparison).
func shaped(token string) bool {
	return len(token) == tokenLen && token[tagLen] == ':' && token[keyLen] == '.'
}

// wellFormed reports whether token has the shape newToken gives.
func wellFormed(token string) bool {
	if !shaped(token) {
		return false
	}
	for i := 0; i < len(token); i++ {
		if i == tagLen || i == keyLen {
			continue
		}
		if c := token[i]; !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}

// keyOf returns the L1 key of a shaped token, "<tag>:<ref>": a part of
// the token (no allocation).
func keyOf(token string) string { return token[:keyLen] }

// secretOf returns the secret of a shaped token.
func secretOf(token string) string { return token[keyLen+1:] }

// splitKey returns the tag and ref of an L1 key.
func splitKey(key string) (tag, ref string, ok bool) {
	tag, ref, ok = strings.Cut(key, ":")
	return tag, ref, ok && len(tag) == tagLen && len(ref) == refLen
}

// equal reports whether a and b are equal, in a time that depends on
// their length only.
func equal(a, b string) bool {
	if len(a) != len(b) {
		return false
	}
	var v byte
	for i := 0; i < len(a); i++ {
		v |= a[i] ^ b[i]
	}
	return subtle.ConstantTimeByteEq(v, 0) == 1
}

// keys names the Redis keys of a namespace. Every key of one user carries
// the user's tag as its hash tag:
//
//	<namespace>:{u:<tag>}:s:<ref>   a session (HASH)
//	<namespace>:{u:<tag>}:i         the user's index of sessions (HASH)
type keys struct{ ns string }

func (k keys) session(tag, ref string) string { return k.ns + ":{u:" + tag + "}:s:" + ref }
func (k keys) index(tag string) string        { return k.ns + ":{u:" + tag + "}:i" }
