package keyhash

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"hash"
	"slices"
	"sync"
)

// Size is the length in bytes of a whole hash.
const Size = sha256.Size

// Hasher computes HMAC-SHA256 under the secret it was made with. It is
// safe for concurrent use; the zero value is not ready: use [New].
type Hasher struct {
	pool sync.Pool // of hash.Hash
}

// New returns a Hasher keyed by a copy of secret.
func New(secret []byte) *Hasher {
	key := slices.Clone(secret)
	h := &Hasher{}
	h.pool.New = func() any { return hmac.New(sha256.New, key) }
	return h
}

// Base64 returns base64url, without padding, of the first n bytes (at
// most [Size]) of HMAC(prefix || s).
func (h *Hasher) Base64(prefix, s string, n int) string {
	m := h.pool.Get().(hash.Hash)
	m.Reset()
	m.Write([]byte(prefix))
	m.Write([]byte(s))
	var sum [Size]byte
	m.Sum(sum[:0])
	h.pool.Put(m)
	return base64.RawURLEncoding.EncodeToString(sum[:min(n, Size)])
}
