package notify

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"hash/fnv"
	"strconv"
	"strings"
)

// userTagBytes is how much of SHA-256(user) names a user's slot: 96 bits.
// It is not a secret (the stream entries hold the user id, which the
// sender needs); hashing only keeps any user id, '{' and '}' included,
// safe as a Cluster hash tag.
const userTagBytes = 12

// userTag returns the hash tag of a user's keys.
func userTag(user string) string {
	sum := sha256.Sum256([]byte(user))
	return base64.RawURLEncoding.EncodeToString(sum[:userTagBytes])
}

// keys names the Redis keys of one user. Every key of a user shares the
// user's hash tag, so a user's stream, dedup markers and lock live in one
// Cluster slot and each script touches one slot.
//
//	<ns>:{<user tag>}:s             the user's stream (entries of every channel)
//	<ns>:{<user tag>}:d:<hash>      a dedup marker (channel, dedup key), with DedupTTL
//	<ns>:{<user tag>}:lock          the lock of the consumer working on the user, with Lease
type keys struct {
	stream, lock, dedupPrefix string
}

func userKeys(ns, user string) keys {
	p := ns + ":{" + userTag(user) + "}:"
	return keys{stream: p + "s", lock: p + "lock", dedupPrefix: p + "d:"}
}

func (k keys) dedup(ch Channel, dedupKey string) string {
	sum := sha256.Sum256([]byte(string(ch) + "\x00" + dedupKey))
	return k.dedupPrefix + base64.RawURLEncoding.EncodeToString(sum[:16])
}

// shardOf returns the index shard of a user: 0..shards-1.
func shardOf(user string, shards int) int {
	h := fnv.New32a()
	h.Write([]byte(user))
	return int(h.Sum32() % uint32(shards))
}

// indexKey names index shard i: a sorted set of user ids scored by the
// time (Redis's, ms) their next digest is due.
//
//	<ns>:{ix<i>}:due
func indexKey(ns string, i int) string {
	return ns + ":{ix" + strconv.Itoa(i) + "}:due"
}

// ProviderKey is the provider idempotency key of a digest: 32 hex digits
// of SHA-256 over the user, the channel and the stream ids of the entries,
// in order. The same digest sent twice (a consumer crashed between the
// send and its acknowledgement) carries the same key, so a provider that
// honours idempotency keys absorbs the second send.
func ProviderKey(user string, ch Channel, ids []string) string {
	h := sha256.New()
	h.Write([]byte(user))
	h.Write([]byte{0})
	h.Write([]byte(ch))
	h.Write([]byte{0})
	h.Write([]byte(strings.Join(ids, ",")))
	return hex.EncodeToString(h.Sum(nil)[:16])
}
