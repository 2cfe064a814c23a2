package idempotency

import "github.com/redis/go-redis/v9"

// A record is one Redis hash, in a hash slot of its own ("<ns>:{<hash>}"):
//
//	s   state: r (an attempt runs), c (completed), f (the last attempt failed)
//	k   how the current attempt began: a (first), t (took an expired lease
//	    over), f (after a failed attempt)
//	fp  the request's fingerprint (64 hex digits)
//	o   the current attempt's owner token (random)
//	fe  the current attempt's fence
//	ld  the lease deadline, in milliseconds on Redis's clock
//	n   the attempt number (1 for the first)
//	rp  the last recovery point an attempt recorded (Attempt.Checkpoint)
//	res the recorded result (a codec envelope), in state c only
//
// Every script reads and checks the whole record (recordLua), decides on
// Redis's clock (nowLua) and gives the key its TTL in the same call. A
// completed record is never written again by any script.

// nowLua sets now: Redis's clock in milliseconds, plus the test offset in
// ARGV[off] (0 outside tests).
const nowLua = `
local function clock(off)
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) + tonumber(off)
end
`

// recordLua defines load(), which returns the record as a table, false if
// there is none, or nil if the key holds something this package did not
// write.
const recordLua = `
local function load()
  local v = redis.pcall('HMGET', KEYS[1], 's', 'k', 'fp', 'o', 'fe', 'ld', 'n', 'rp', 'res')
  if type(v) == 'table' and v.err then return nil end
  if not v[1] then
    if redis.call('EXISTS', KEYS[1]) == 1 then return nil end
    return false
  end
  local r = {s = v[1], k = v[2], fp = v[3], o = v[4], fe = tonumber(v[5]), ld = tonumber(v[6]),
    n = tonumber(v[7]), rp = v[8] or '', res = v[9]}
  if r.s ~= 'r' and r.s ~= 'c' and r.s ~= 'f' then return nil end
  if r.k ~= 'a' and r.k ~= 't' and r.k ~= 'f' then return nil end
  if not r.fp or #r.fp ~= 64 or not r.o or r.o == '' or not r.fe or not r.ld or not r.n then return nil end
  if r.s == 'c' and (not r.res or r.res == '') then return nil end
  return r
end
local function mine(r, owner, fence)
  return r.o == owner and r.fe == tonumber(fence)
end
`

// beginScript starts an attempt or reports why not. KEYS[1] the record;
// ARGV: fingerprint, owner, lease ms, retention ms, clock offset ms.
// Reply: {outcome, fence, ms left (lease, or record TTL once completed),
// attempt number, recovery point, result}. Outcomes: acquired, takeover,
// retry (after a failed attempt), inflight, completed, mismatch, corrupt.
//
// The owner token makes it idempotent: a client that resends the script
// after a lost reply finds its own attempt and gets it back.
var beginScript = redis.NewScript(nowLua + recordLua + `
local now = clock(ARGV[5])
local lease = tonumber(ARGV[3])
local keep = lease + tonumber(ARGV[4])
local r = load()
if r == nil then return {'corrupt', 0, 0, 0, '', ''} end
if r == false then
  redis.call('HSET', KEYS[1], 's', 'r', 'k', 'a', 'fp', ARGV[1], 'o', ARGV[2], 'fe', now, 'ld', now + lease, 'n', 1)
  redis.call('PEXPIRE', KEYS[1], keep)
  return {'acquired', now, lease, 1, '', ''}
end
if r.fp ~= ARGV[1] then return {'mismatch', 0, 0, 0, '', ''} end
local names = {a = 'acquired', t = 'takeover', f = 'retry'}
if r.s == 'r' and r.o == ARGV[2] then
  return {names[r.k], r.fe, math.max(r.ld - now, 0), r.n, r.rp, ''}
end
if r.s == 'c' then
  return {'completed', r.fe, redis.call('PTTL', KEYS[1]), r.n, '', r.res}
end
if r.s == 'r' and r.ld > now then
  return {'inflight', 0, r.ld - now, r.n, '', ''}
end
local kind = 't'
if r.s == 'f' then kind = 'f' end
local fence = math.max(r.fe + 1, now)
redis.call('HSET', KEYS[1], 's', 'r', 'k', kind, 'o', ARGV[2], 'fe', fence, 'ld', now + lease, 'n', r.n + 1)
redis.call('PEXPIRE', KEYS[1], keep)
return {names[kind], fence, lease, r.n + 1, r.rp, ''}
`)

// heartbeatScript extends a live attempt's lease and, if ARGV[8] is "1",
// records the recovery point ARGV[9]. KEYS[1] the record; ARGV: owner,
// fence, lease ms, retention ms, clock offset ms, fingerprint, attempt
// number, set recovery point, recovery point. Reply: {outcome, lease ms}.
// Outcomes: ok, reasserted (the record was gone and was written again),
// stale (a newer attempt holds it), done (this attempt already ended),
// corrupt.
//
// A lease that expired without being taken over is extended: no other
// attempt started, so the owner is still the only one.
var heartbeatScript = redis.NewScript(nowLua + recordLua + `
local now = clock(ARGV[5])
local lease = tonumber(ARGV[3])
local keep = lease + tonumber(ARGV[4])
local r = load()
if r == nil then return {'corrupt', 0} end
if r == false then
  redis.call('HSET', KEYS[1], 's', 'r', 'k', 'a', 'fp', ARGV[6], 'o', ARGV[1], 'fe', ARGV[2], 'ld', now + lease, 'n', ARGV[7])
  if ARGV[8] == '1' then redis.call('HSET', KEYS[1], 'rp', ARGV[9]) end
  redis.call('PEXPIRE', KEYS[1], keep)
  return {'reasserted', lease}
end
if not mine(r, ARGV[1], ARGV[2]) then return {'stale', 0} end
if r.s ~= 'r' then return {'done', 0} end
redis.call('HSET', KEYS[1], 'ld', now + lease)
if ARGV[8] == '1' then redis.call('HSET', KEYS[1], 'rp', ARGV[9]) end
redis.call('PEXPIRE', KEYS[1], keep)
return {'ok', lease}
`)

// completeScript records an attempt's result. KEYS[1] the record; ARGV:
// owner, fence, result, retention ms, clock offset ms, fingerprint, attempt
// number. Reply: {outcome, record TTL ms}. Outcomes: ok, recreated (the
// record was gone and was written again, completed), stale, corrupt.
//
// It succeeds only for the attempt that holds the record (owner and fence),
// whether or not its lease has run out: until another attempt takes the
// lease over, no one else ran. It never writes over a completed record.
var completeScript = redis.NewScript(nowLua + recordLua + `
local now = clock(ARGV[5])
local keep = tonumber(ARGV[4])
local r = load()
if r == nil then return {'corrupt', 0} end
if r == false then
  redis.call('HSET', KEYS[1], 's', 'c', 'k', 'a', 'fp', ARGV[6], 'o', ARGV[1], 'fe', ARGV[2], 'ld', now, 'n', ARGV[7], 'res', ARGV[3])
  redis.call('PEXPIRE', KEYS[1], keep)
  return {'recreated', keep}
end
if not mine(r, ARGV[1], ARGV[2]) then return {'stale', 0} end
if r.s == 'c' then return {'ok', redis.call('PTTL', KEYS[1])} end
if r.s ~= 'r' then return {'stale', 0} end
redis.call('HSET', KEYS[1], 's', 'c', 'ld', now, 'res', ARGV[3])
redis.call('PEXPIRE', KEYS[1], keep)
return {'ok', keep}
`)

// failScript ends an attempt without a result, so that the next request
// runs at once (with a larger fence). KEYS[1] the record; ARGV: owner,
// fence, retention ms. Reply: ok, gone, stale, done, corrupt.
var failScript = redis.NewScript(recordLua + `
local r = load()
if r == nil then return 'corrupt' end
if r == false then return 'gone' end
if not mine(r, ARGV[1], ARGV[2]) then return 'stale' end
if r.s == 'c' then return 'done' end
if r.s == 'f' then return 'ok' end
redis.call('HSET', KEYS[1], 's', 'f')
redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[3]))
return 'ok'
`)

// inspectScript reads a record. KEYS[1] the record; ARGV: clock offset ms.
// Reply: {state or 'none' or 'corrupt', fence, attempt number, recovery
// point, lease ms left, record TTL ms}.
var inspectScript = redis.NewScript(nowLua + recordLua + `
local now = clock(ARGV[1])
local r = load()
if r == nil then return {'corrupt', 0, 0, '', 0, 0} end
if r == false then return {'none', 0, 0, '', 0, 0} end
return {r.s, r.fe, r.n, r.rp, math.max(r.ld - now, 0), redis.call('PTTL', KEYS[1])}
`)
