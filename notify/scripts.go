package notify

import (
	"time"

	"github.com/redis/go-redis/v9"
)

// Every script touches keys of one slot: a user's (stream, dedup marker,
// lock) or one index shard's. Time is Redis's (TIME), in milliseconds.

// enqueueScript queues a notification unless its dedup marker exists.
//
//	KEYS[1] stream   KEYS[2] dedup marker
//	ARGV: group, dedup ttl ms, user, channel, dedup key, payload, max delay ms, max items
//
// Returns {queued (0/1), id, due ms}: due is when the user's next digest
// is due at the latest (now + max delay, or now once max items are queued).
var enqueueScript = redis.NewScript(`
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local prev = redis.call('GET', KEYS[2])
if prev then return {0, prev, now} end
if redis.call('EXISTS', KEYS[1]) == 0 then
  redis.call('XGROUP', 'CREATE', KEYS[1], ARGV[1], '0', 'MKSTREAM')
end
local id = redis.call('XADD', KEYS[1], '*', 'u', ARGV[3], 'c', ARGV[4], 'k', ARGV[5], 'p', ARGV[6])
redis.call('PERSIST', KEYS[1]) -- an emptied stream's expiry (unlockScript)
redis.call('SET', KEYS[2], id, 'PX', ARGV[2])
local due = now + tonumber(ARGV[7])
if redis.call('XLEN', KEYS[1]) >= tonumber(ARGV[8]) then due = now end
return {1, id, due}
`)

// repairIndex is the start of every index script: a shard key that is
// not a sorted set (written by something else) holds no user of ours, so
// it is deleted and the index starts again from this write. Without it,
// one bad key failed every enqueue of its shard, buffered them, and held
// every later notification of every user behind them.
const repairIndex = `
local ty = redis.call('TYPE', KEYS[1])['ok']
if ty ~= 'zset' and ty ~= 'none' then redis.call('DEL', KEYS[1]) end
`

// claimScript takes up to n users whose work is due from an index shard
// and pushes their score lease ms ahead, so that no other consumer takes
// them meanwhile and they come back if this one dies. The score has a
// fraction of its own (a random multiple of 1/4096 ms, exact in a double),
// so that the releasing consumer can tell its claim from another's made in
// the same millisecond (releaseScript).
//
//	KEYS[1] index shard   ARGV: n, lease ms, fraction[, now ms (ConsumerOptions.Now)]
//
// Returns {now ms, {users...}}: the score is now + lease + fraction.
var claimScript = redis.NewScript(repairIndex + `
local now = tonumber(ARGV[4])
if not now then
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
local us = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, tonumber(ARGV[1]))
for _, u in ipairs(us) do redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]) + tonumber(ARGV[3]), u) end
return {now, us}
`)

// indexScript is an enqueue's index write: the user is due at ARGV[2] ms,
// or at its score if that is earlier, and then its score still moves (by a
// microsecond), so that a consumer releasing the user sees that something
// came since its claim (releaseScript).
//
//	KEYS[1] index shard   ARGV: user, due ms
var indexScript = redis.NewScript(repairIndex + `
local due = tonumber(ARGV[2])
local s = tonumber(redis.call('ZSCORE', KEYS[1], ARGV[1]))
if s and s <= due then due = s - 0.001 end
redis.call('ZADD', KEYS[1], due, ARGV[1])
return 1
`)

// releaseScript is a consumer's index write when it is done with a user
// it claimed with score ARGV[2] (claim time + lease): if the score is still
// that one, nothing was enqueued since the claim, and the user leaves the
// index (ARGV[3] == 0) or is due at ARGV[3]; otherwise an enqueue wrote it,
// and the user is due at the earlier of the two. One conditional write on
// the index's own slot: a release that fails leaves the user in the index
// at its lease score (it comes back), never out of it with an entry unseen.
//
//	KEYS[1] index shard   ARGV: user, claimed score, next due ms (0: none)
var releaseScript = redis.NewScript(repairIndex + `
local s = tonumber(redis.call('ZSCORE', KEYS[1], ARGV[1]))
local next = tonumber(ARGV[3])
if s == tonumber(ARGV[2]) then
  if next == 0 then redis.call('ZREM', KEYS[1], ARGV[1]) else redis.call('ZADD', KEYS[1], next, ARGV[1]) end
elseif next > 0 and (not s or next < s) then
  redis.call('ZADD', KEYS[1], next, ARGV[1])
end
return 1
`)

// lockScript takes a user's lock for lease ms.
//
//	KEYS[1] lock   ARGV: token, lease ms
//
// Returns now ms, or -now ms if another consumer holds the lock. A lock
// that already holds this token is this call's own (go-redis resent the
// script after a lost reply): it is taken.
var lockScript = redis.NewScript(`
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
if not redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) and redis.call('GET', KEYS[1]) ~= ARGV[1] then return -now end
return now
`)

// unlockScript releases a user's lock if it is still this consumer's, and
// lets the stream (with its group) expire after ttl ms once it holds no
// entry. Not deleted at once: a stream remembers the last id it gave, so
// its ids never repeat while it lives, and a digest's ProviderKey is made
// of them. A stream deleted and created again in the same millisecond (or
// after the clock stepped back) gave old ids again, the new digest an old
// digest's key, and the provider absorbed it as a repeat: a notification
// lost. ttl outlives any provider's idempotency window.
//
// It also removes this consumer from the group when it holds no pending
// entry: consumer names are per process, and a stream that lives on would
// otherwise keep one entry for every consumer that ever read it.
//
//	KEYS[1] lock   KEYS[2] stream   ARGV: token, ttl ms, group, consumer
var unlockScript = redis.NewScript(`
if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('DEL', KEYS[1]) end
if redis.call('EXISTS', KEYS[2]) == 1 then
  local p = redis.pcall('XPENDING', KEYS[2], ARGV[3], '-', '+', 1, ARGV[4])
  if type(p) == 'table' and not p.err and #p == 0 then
    redis.pcall('XGROUP', 'DELCONSUMER', KEYS[2], ARGV[3], ARGV[4])
  end
  if redis.call('XLEN', KEYS[2]) == 0 then redis.call('PEXPIRE', KEYS[2], ARGV[2]) end
end
return 1
`)

// emptyStreamTTL is how long an emptied stream lives on (unlockScript).
const emptyStreamTTL = 7 * 24 * time.Hour
