package ratelimit

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"hash"
	"strings"
	"sync"
)

// actorHashBytes is how much of the HMAC names an actor: 96 bits, so that
// two actors share a quota by accident only past about 2^48 actors.
const actorHashBytes = 12

// actorSum is an actor's keyed hash (see hasher).
type actorSum [actorHashBytes]byte

// actorHashLen is the length of an actorSum in base64url: 16 characters.
const actorHashLen = actorHashBytes * 4 / 3

// String returns s in base64url without padding: what Redis keys and
// telemetry carry.
func (s actorSum) String() string { return base64.RawURLEncoding.EncodeToString(s[:]) }

// hasher hashes actors with HMAC-SHA256 under the Limiter's secret. It is
// safe for concurrent use.
type hasher struct {
	pool sync.Pool // of *hmacState
}

// hmacState is one HMAC and its scratch space, so that hashing an actor
// allocates nothing.
type hmacState struct {
	mac hash.Hash
	in  []byte
	out [sha256.Size]byte
}

// maxScratch bounds the scratch space a pooled hmacState keeps.
const maxScratch = 1 << 10

func newHasher(secret []byte) *hasher {
	key := append([]byte(nil), secret...)
	h := &hasher{}
	h.pool.New = func() any { return &hmacState{mac: hmac.New(sha256.New, key)} }
	return h
}

// sum returns the actor's keyed hash. The actor itself never leaves the
// process: Redis keys and telemetry carry this.
func (h *hasher) sum(actor string) actorSum {
	st := h.pool.Get().(*hmacState)
	st.mac.Reset()
	st.in = append(st.in[:0], actor...)
	st.mac.Write(st.in)
	st.mac.Sum(st.out[:0])
	var s actorSum
	copy(s[:], st.out[:])
	if cap(st.in) > maxScratch {
		st.in = nil
	}
	h.pool.Put(st)
	return s
}

// hash returns the actor's keyed hash as a string (see actorSum.String).
func (h *hasher) hash(actor string) string { return h.sum(actor).String() }

// key returns the Redis key of policy for an actor's hash: the actor's
// hash is the hash tag, so every policy of one actor lives in one Cluster
// slot and a call that checks several of them runs as one script.
//
//	<namespace>:{<actor hash>}:<policy>
func key(namespace string, actor actorSum, policy string) string {
	var enc [actorHashLen]byte
	base64.RawURLEncoding.Encode(enc[:], actor[:])
	var b strings.Builder
	b.Grow(len(namespace) + len(enc) + len(policy) + 4)
	b.WriteString(namespace)
	b.WriteString(":{")
	b.Write(enc[:])
	b.WriteString("}:")
	b.WriteString(policy)
	return b.String()
}
