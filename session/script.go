package session

import "github.com/redis/go-redis/v9"

// The Redis side. Every script reads the time from Redis (TIME): timeouts
// run on Redis's clock, never on an instance's. Every script touches the
// keys of one user only, all named in KEYS and all under the user's hash
// tag, so each is one atomic step in one Cluster slot.
//
// A session is a HASH of its fields, plus reserved fields that start with
// '_': _u user, _c created, _a absolute deadline, _s last seen (all µs on
// Redis's clock), _v version, _d device, _i address, _h the keyed hash of
// its token (which every write checks). Its TTL (PEXPIREAT, set in the
// script that creates or touches it) is the idle deadline, min(_s + idle,
// _a), so Redis itself forgets an idle session.
//
// The user's index is a HASH from ref to a JSON object of strings {c
// created, s last seen, e expiry (µs), d device, i address}. It is the
// authority: a session whose ref is not in its user's index does not
// exist, whatever its HASH says, so ending sessions is one HDEL per
// session in one script even for sessions whose keys the caller could not
// name. Entries past their expiry are pruned by the scripts that read the
// index. Its TTL is moved out to the latest absolute deadline of its
// sessions when one is created.
//
// Numbers cross the boundary as decimal strings (string.format('%d')):
// Redis's Lua turns numbers into integers by truncation, and tostring
// would round µs timestamps (%.14g).
const luaPrelude = `
local function now_us()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000000 + tonumber(t[2])
end
local function fmt(n) return string.format('%d', n) end
local function entry(c, s, e, d, i)
  return cjson.encode({c = fmt(c), s = fmt(s), e = fmt(e), d = d, i = i})
end
local function expiry(v)
  local ok, e = pcall(cjson.decode, v)
  if not ok or type(e) ~= 'table' then return nil end
  return tonumber(e.e), e
end
`

// readScript: KEYS session, index; ARGV ref. Reply {now} if the session
// does not exist, else {now, {field, value, ...}}.
var readScript = redis.NewScript(luaPrelude + `
local now = now_us()
if redis.call('HEXISTS', KEYS[2], ARGV[1]) == 0 then return {fmt(now)} end
local h = redis.call('HGETALL', KEYS[1])
if #h == 0 then return {fmt(now)} end
return {fmt(now), h}
`)

// touchScript records activity: KEYS session, index; ARGV ref, idle (µs),
// touch interval (µs), address. It writes only if the interval has passed
// since the last record (on Redis's clock, whichever instance wrote it).
// Reply {now} if the session does not exist, else {now, last seen,
// wrote (0/1)}.
var touchScript = redis.NewScript(luaPrelude + `
local now = now_us()
if redis.call('HEXISTS', KEYS[2], ARGV[1]) == 0 then return {fmt(now)} end
local h = redis.call('HMGET', KEYS[1], '_s', '_a', '_c', '_d', '_i')
if not h[1] or not h[2] then
  redis.call('HDEL', KEYS[2], ARGV[1])
  return {fmt(now)}
end
local seen, abs = tonumber(h[1]), tonumber(h[2])
if now >= abs then
  redis.call('DEL', KEYS[1])
  redis.call('HDEL', KEYS[2], ARGV[1])
  return {fmt(now)}
end
local wrote = 0
if now - seen >= tonumber(ARGV[3]) then
  seen = now
  local ip = ARGV[4]
  if ip == '' then ip = h[5] or '' end
  local exp = math.min(seen + tonumber(ARGV[2]), abs)
  redis.call('HSET', KEYS[1], '_s', fmt(seen), '_i', ip)
  redis.call('PEXPIREAT', KEYS[1], fmt(math.floor(exp / 1000)))
  redis.call('HSET', KEYS[2], ARGV[1], entry(tonumber(h[3]), seen, exp, h[4] or '', ip))
  wrote = 1
end
return {fmt(now), fmt(seen), wrote}
`)

// createScript: KEYS session, index; ARGV ref, user, idle (µs), absolute
// (µs), device, address, max sessions per user, then field/value pairs.
// It prunes the index, ends the least recently seen sessions beyond the
// maximum, and reports whether any other live session of the user has the
// same device. Reply {now, new device (0/1), other live sessions,
// {evicted refs}}.
var createScript = redis.NewScript(luaPrelude + `
local now = now_us()
local abs = now + tonumber(ARGV[4])
local exp = math.min(now + tonumber(ARGV[3]), abs)
local max = tonumber(ARGV[7])
local all = redis.call('HGETALL', KEYS[2])
local live, newdev = {}, 1
for i = 1, #all, 2 do
  local e, v = expiry(all[i + 1])
  if not e or e <= now or all[i] == ARGV[1] then
    redis.call('HDEL', KEYS[2], all[i])
  else
    live[#live + 1] = {all[i], tonumber(v.s) or 0}
    if v.d == ARGV[5] then newdev = 0 end
  end
end
local others = #live
local evicted = {}
if #live >= max then
  table.sort(live, function(a, b) return a[2] < b[2] end)
  for j = 1, #live - max + 1 do
    redis.call('HDEL', KEYS[2], live[j][1])
    evicted[#evicted + 1] = live[j][1]
  end
end
local args = {'_u', ARGV[2], '_c', fmt(now), '_a', fmt(abs), '_s', fmt(now), '_v', '1', '_d', ARGV[5], '_i', ARGV[6]}
for i = 8, #ARGV do args[#args + 1] = ARGV[i] end
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], unpack(args))
redis.call('PEXPIREAT', KEYS[1], fmt(math.floor(exp / 1000)))
redis.call('HSET', KEYS[2], ARGV[1], entry(now, now, exp, ARGV[5], ARGV[6]))
local until_ms = math.floor(abs / 1000) + 1000
if redis.call('PEXPIRETIME', KEYS[2]) < until_ms then
  redis.call('PEXPIREAT', KEYS[2], fmt(until_ms))
end
return {fmt(now), newdev, others, evicted}
`)

// updateScript changes fields: KEYS session, index; ARGV ref, token hash,
// expected version ('0': any), number of set arguments n, n arguments
// (field/value pairs), then the fields to delete. It never touches the
// TTL. Reply {1, new version}, {0} if the session does not exist (or the
// hash is not its token's), {-1, current version} on a version mismatch.
var updateScript = redis.NewScript(`
if redis.call('HEXISTS', KEYS[2], ARGV[1]) == 0 then return {0} end
local h = redis.call('HMGET', KEYS[1], '_v', '_h')
local v = h[1]
if not v or h[2] ~= ARGV[2] then return {0} end
if ARGV[3] ~= '0' and ARGV[3] ~= v then return {-1, v} end
local n = tonumber(ARGV[4])
if n > 0 then redis.call('HSET', KEYS[1], unpack(ARGV, 5, 4 + n)) end
if #ARGV > 4 + n then redis.call('HDEL', KEYS[1], unpack(ARGV, 5 + n, #ARGV)) end
return {1, tostring(redis.call('HINCRBY', KEYS[1], '_v', 1))}
`)

// renewScript moves a session to a new ref: KEYS old session, new
// session, index; ARGV old ref, new ref, old token's hash, new token's
// hash. RENAME keeps every field and the TTL; the index entry moves with
// it. Reply 1, or 0 if the session does not exist (or the old hash is not
// its token's).
var renewScript = redis.NewScript(`
local e = redis.call('HGET', KEYS[3], ARGV[1])
if not e or redis.call('HGET', KEYS[1], '_h') ~= ARGV[3] then return 0 end
redis.call('RENAME', KEYS[1], KEYS[2])
redis.call('HSET', KEYS[2], '_h', ARGV[4])
redis.call('HDEL', KEYS[3], ARGV[1])
redis.call('HSET', KEYS[3], ARGV[2], e)
return 1
`)

// revokeScript ends sessions: KEYS index, the session whose token hash
// is checked (any key of the slot when none is), then session keys; ARGV
// mode ('one': the sessions of ARGV[4...]; 'all'; 'others': all but
// ARGV[2]), the ref to keep, the token hash that KEYS[2] must have (”:
// none), then the refs of KEYS[3...] in order. For 'all' and 'others'
// every ref in the index is removed, named in KEYS or not (a session
// created after the caller read the index); the session keys in KEYS are
// deleted. Reply {{refs ended}, {refs ended whose keys were not in KEYS}},
// or {-1} when the hash does not match or, for 'others', the session to
// keep does not exist.
var revokeScript = redis.NewScript(`
local mode, keep = ARGV[1], ARGV[2]
if ARGV[3] ~= '' and redis.call('HGET', KEYS[2], '_h') ~= ARGV[3] then return {-1} end
local listed = {}
for i = 3, #KEYS do listed[ARGV[i + 1]] = KEYS[i] end
local refs
if mode == 'one' then
  refs = {}
  for i = 4, #ARGV do
    if redis.call('HEXISTS', KEYS[1], ARGV[i]) == 1 then refs[#refs + 1] = ARGV[i] end
  end
else
  if mode == 'others' and redis.call('HEXISTS', KEYS[1], keep) == 0 then return {-1} end
  refs = redis.call('HKEYS', KEYS[1])
end
local gone, unlisted = {}, {}
for _, r in ipairs(refs) do
  if r ~= keep then
    redis.call('HDEL', KEYS[1], r)
    gone[#gone + 1] = r
    if not listed[r] then unlisted[#unlisted + 1] = r end
  end
end
for i = 3, #KEYS do
  if ARGV[i + 1] ~= keep then redis.call('DEL', KEYS[i]) end
end
return {gone, unlisted}
`)

// listScript: KEYS index. Prunes expired entries. Reply {now, {ref,
// entry, ...}}.
var listScript = redis.NewScript(luaPrelude + `
local now = now_us()
local all = redis.call('HGETALL', KEYS[1])
local out = {}
for i = 1, #all, 2 do
  local e = expiry(all[i + 1])
  if not e or e <= now then
    redis.call('HDEL', KEYS[1], all[i])
  else
    out[#out + 1] = all[i]
    out[#out + 1] = all[i + 1]
  end
end
return {fmt(now), out}
`)
