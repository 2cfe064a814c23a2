package ratelimit

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"hash"
	"sync"
)

// actorHashBytes is how much of the HMAC names an actor: 96 bits, so that
// two actors share a quota by accident only past about 2^48 actors.
const actorHashBytes = 12

// hasher hashes actors with HMAC-SHA256 under the Limiter's secret. It is
// safe for concurrent use.
type hasher struct {
	pool sync.Pool // of hash.Hash
}

func newHasher(secret []byte) *hasher {
	key := append([]byte(nil), secret...)
	h := &hasher{}
	h.pool.New = func() any { return hmac.New(sha256.New, key) }
	return h
}

// hash returns the actor's keyed hash, base64url without padding (16
// characters). It is what Redis keys and telemetry carry; the actor itself
// never leaves the process.
func (h *hasher) hash(actor string) string {
	m := h.pool.Get().(hash.Hash)
	m.Reset()
	m.Write([]byte(actor))
	var sum [sha256.Size]byte
	m.Sum(sum[:0])
	h.pool.Put(m)
	return base64.RawURLEncoding.EncodeToString(sum[:actorHashBytes])
}

// key returns the Redis key of policy p for an actor's hash: the actor's
// hash is the hash tag, so every policy of one actor lives in one Cluster
// slot and a call that checks several of them runs as one script.
//
//	<namespace>:{<actor hash>}:<policy>
func key(namespace, actorHash, policy string) string {
	return namespace + ":{" + actorHash + "}:" + policy
}
