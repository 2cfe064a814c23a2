package ratelimit

import (
	"context"
	"crypto/sha1"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"

	"github.com/redis/go-redis/v9"
)

// The Redis side: one script decides a whole call, for every key it touches
// (a policy and the policies it includes, all under the actor's hash tag),
// on Redis's clock, in one atomic step. A call of one policy with one
// window, the common case, runs a script written for its algorithm alone
// (gcraScript, logScript, counterScript): no loop, no tables, no parsing. Every other call
// runs decideScript. They keep the same state in the same keys, so a
// policy's calls can move between them.
//
// decideScript
//
// KEYS: one per policy, the first the policy asked for.
//
// ARGV: [1] n, the cost; [2] a member id unique to the call (sliding log);
// then for each key: algorithm (1 sliding log, 2 sliding window, 3 GCRA),
// consume-denied (0/1), number of windows, and for each window: N, the
// window in microseconds, the GCRA burst.
//
// Reply: {now (µs, from TIME), allowed (0/1), then for each key and window:
// remaining, reset (µs until remaining grows), retry (µs until a call of
// cost n would fit this window; 0 if it fits now)}.
//
// State: a sorted set for the sliding log; for the counter and GCRA, one
// string of integers (per window: fixed-window index, count, previous
// count; or the theoretical arrival time), read with GET and written with
// SET ... PX, so the TTL comes with the write. A policy that changes its
// algorithm needs a new name (or the old keys to expire): the key types
// differ.
//
// Phase one reads every key and decides each window; phase two writes only
// if every window of every key admits (all or nothing), or, for a key of a
// ConsumeDenied policy, always. Every write sets the key's TTL in the same
// step, so no key outlives its longest window.
//
// Numbers: Redis TIME in µs is about 1.8e15, exact in a Lua double (2^53);
// the script formats keys' scores with %d (a 64-bit long in Redis's Lua),
// never with tostring (%.14g), which would round them.
var decideScript = newScript(`
if redis.replicate_commands then redis.replicate_commands() end
local n = tonumber(ARGV[1])
local id = ARGV[2]
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local eps = 1e-9

local function ceil(x) return math.ceil(x - eps) end

-- sliding log: a sorted set of admitted units scored by their time.
local function log_check(s)
  redis.call('ZREMRANGEBYSCORE', s.key, '-inf', string.format('%d', now - s.maxper))
  for i = 1, s.nw do
    local per, lim = s.per[i], s.lim[i]
    local lo = string.format('(%d', now - per)
    local used, first
    if per == s.maxper then
      -- Trimmed above: the whole set is in this window.
      used = redis.call('ZCARD', s.key)
      first = redis.call('ZRANGE', s.key, 0, 0, 'WITHSCORES')
    else
      used = redis.call('ZCOUNT', s.key, lo, '+inf')
      first = redis.call('ZRANGE', s.key, lo, '+inf', 'BYSCORE', 'LIMIT', 0, 1, 'WITHSCORES')
    end
    local oldest = now
    if first[2] then oldest = tonumber(first[2]) end
    if used + n <= lim then
      s.rem_ok[i] = lim - used - n
      s.rem_no[i] = lim - used
      s.retry[i] = 0
      s.reset[i] = oldest + per - now
    else
      s.ok = false
      local e = redis.call('ZRANGE', s.key, lo, '+inf', 'BYSCORE', 'LIMIT', used + n - lim - 1, 1, 'WITHSCORES')
      s.rem_ok[i] = 0
      s.rem_no[i] = lim - used
      s.retry[i] = tonumber(e[2]) + per - now
      s.reset[i] = oldest + per - now
    end
  end
end

-- log_add adds n units at now (their members id:1..n, or id alone), in
-- chunks (unpack has about 8,000 stack slots), then keeps the newest lim:
-- they decide every window (a window's decision and retry depend on its
-- newest lim units), and a ConsumeDenied policy's denied calls must not
-- grow the set without bound.
local function log_add(key, id, n, lim)
  if n == 1 then
    redis.call('ZADD', key, now, id)
  else
    for j = 1, n, 1000 do
      local args = {}
      for k = j, math.min(n, j + 999) do
        args[#args + 1] = now
        args[#args + 1] = id .. ':' .. k
      end
      redis.call('ZADD', key, unpack(args))
    end
  end
  local over = redis.call('ZCARD', key) - lim
  if over > 0 then redis.call('ZREMRANGEBYRANK', key, 0, over - 1) end
end

local function log_apply(s)
  log_add(s.key, id, n, s.maxlim)
  redis.call('PEXPIRE', s.key, ceil(s.maxper / 1000) + 1)
end

-- The counter and GCRA keep their state as one string of integers
-- separated by spaces (one GET, one SET with its TTL).
local function ints(key)
  local v, out = redis.call('GET', key), {}
  if v then for x in string.gmatch(v, '%S+') do out[#out + 1] = tonumber(x) end end
  return out
end

-- sliding window counter: per window, the current fixed window's index,
-- its count and the previous window's count.
local function until_est(target, cur, prev, elapsed, per)
  if prev * (per - elapsed) / per + cur <= target + eps then return 0 end
  if cur <= target and prev > 0 then
    return ceil(per - (target - cur) * per / prev - elapsed)
  end
  if target < 0 then return per - elapsed end
  local e2 = 0
  if cur > 0 then e2 = per - target * per / cur end
  if e2 < 0 then e2 = 0 end
  return ceil(per - elapsed + e2)
end

local function counter_check(s)
  local v = ints(s.key)
  s.bucket, s.cur, s.prev = {}, {}, {}
  for i = 1, s.nw do
    local per, lim = s.per[i], s.lim[i]
    local bucket = math.floor(now / per)
    local b, c, p = v[3 * i - 2], v[3 * i - 1] or 0, v[3 * i] or 0
    local cur, prev = 0, 0
    -- A stored window later than Redis's clock (a failover to a node whose
    -- clock is behind, an NTP step back) counts as the current one, and so
    -- does the window before it that it stored (it is not earlier than the
    -- current one either): read as empty or weighted as the previous
    -- window, they would admit up to another N.
    if b and b > bucket then cur = c + p elseif b == bucket then cur, prev = c, p elseif b == bucket - 1 then prev = c end
    s.bucket[i], s.cur[i], s.prev[i] = bucket, cur, prev
    local elapsed = now - bucket * per
    local est = prev * (per - elapsed) / per + cur
    if est + n <= lim + eps then
      local rem = math.floor(lim - est - n + eps)
      s.rem_ok[i] = rem
      s.rem_no[i] = math.floor(lim - est + eps)
      s.retry[i] = 0
      s.reset[i] = until_est(lim - rem - 1, cur + n, prev, elapsed, per)
    else
      s.ok = false
      local rem = math.max(0, math.floor(lim - est + eps))
      s.rem_ok[i] = rem
      s.rem_no[i] = rem
      s.retry[i] = math.max(1, until_est(lim - n, cur, prev, elapsed, per))
      s.reset[i] = until_est(lim - rem - 1, cur, prev, elapsed, per)
    end
  end
end

local function counter_apply(s)
  local parts = {}
  for i = 1, s.nw do
    parts[#parts + 1] = string.format('%d %d %d', s.bucket[i], s.cur[i] + n, s.prev[i])
  end
  redis.call('SET', s.key, table.concat(parts, ' '), 'PX', ceil(2 * s.maxper / 1000) + 1)
end

-- GCRA: per window, the theoretical arrival time, in whole µs.
local function gcra_room(at, tau, T) return math.max(0, math.floor((now + tau - at) / T + 1e-6)) end
local function gcra_grow(at, r, tau, T)
  if now + tau - at >= tau then return ceil(T) end
  return math.max(1, ceil((r + 1) * T - (now + tau - at)))
end

local function gcra_check(s)
  local v = ints(s.key)
  s.tat = {}
  for i = 1, s.nw do
    local T = s.per[i] / s.lim[i]
    local tau = math.floor(s.burst[i] * T + 0.5)
    local inc = math.floor(n * T + 0.5)
    local tat = v[i] or now
    if tat < now then tat = now end
    local new = tat + inc
    s.tat[i] = new
    if new - tau <= now then
      s.rem_ok[i] = gcra_room(new, tau, T)
      s.rem_no[i] = gcra_room(tat, tau, T)
      s.retry[i] = 0
      s.reset[i] = gcra_grow(new, s.rem_ok[i], tau, T)
    else
      s.ok = false
      s.rem_ok[i] = gcra_room(tat, tau, T)
      s.rem_no[i] = s.rem_ok[i]
      s.retry[i] = new - tau - now
      s.reset[i] = gcra_grow(tat, s.rem_no[i], tau, T)
    end
  end
end

local function gcra_apply(s)
  local parts, last = {}, now
  for i = 1, s.nw do
    parts[i] = string.format('%d', s.tat[i])
    if s.tat[i] > last then last = s.tat[i] end
  end
  redis.call('SET', s.key, table.concat(parts, ' '), 'PX', ceil((last - now) / 1000) + 1)
end

local keys, allowed, a = {}, true, 3
for k = 1, #KEYS do
  local s = {key = KEYS[k], alg = tonumber(ARGV[a]), consume = ARGV[a + 1] == '1', nw = tonumber(ARGV[a + 2]),
    lim = {}, per = {}, burst = {}, maxper = 0, maxlim = 0, ok = true, rem_ok = {}, rem_no = {}, reset = {}, retry = {}}
  a = a + 3
  for i = 1, s.nw do
    s.lim[i], s.per[i], s.burst[i] = tonumber(ARGV[a]), tonumber(ARGV[a + 1]), tonumber(ARGV[a + 2])
    if s.per[i] > s.maxper then s.maxper = s.per[i] end
    if s.lim[i] > s.maxlim then s.maxlim = s.lim[i] end
    a = a + 3
  end
  if s.alg == 1 then log_check(s) elseif s.alg == 2 then counter_check(s) else gcra_check(s) end
  if not s.ok then allowed = false end
  keys[k] = s
end

local out = {now, 0}
if allowed then out[2] = 1 end
for k = 1, #keys do
  local s = keys[k]
  local write = allowed or s.consume
  if write then
    if s.alg == 1 then log_apply(s) elseif s.alg == 2 then counter_apply(s) else gcra_apply(s) end
  end
  for i = 1, s.nw do
    if write then out[#out + 1] = s.rem_ok[i] else out[#out + 1] = s.rem_no[i] end
    out[#out + 1] = s.reset[i]
    out[#out + 1] = s.retry[i]
  end
end
return out
`)

// gcraScript decides a call of a GCRA policy with one window and no
// includes.
//
// KEYS: [1] the policy's key. ARGV: [1] n; [2] unused (the member id of
// the sliding log, empty); [3] the window in µs; [4] N; [5] the burst; [6]
// consume-denied (0/1).
//
// Reply: {now, remaining, reset, retry}, as one window of decideScript's;
// the call was admitted if and only if retry is 0 (a denied call has to
// wait at least 1 µs).
//
// State: the theoretical arrival time in µs, as decideScript keeps it for
// a policy with one window (a value of another shape, left by the policy
// when it had more windows, counts as none).
var gcraScript = newScript(`
local t = redis.call('TIME')
local now = t[1] * 1000000 + t[2]
local T = ARGV[3] / ARGV[4]
local tau = math.floor(ARGV[5] * T + 0.5)
local tat = tonumber(redis.call('GET', KEYS[1])) or now
if tat < now then tat = now end
local new = tat + math.floor(ARGV[1] * T + 0.5)
local retry, at = new - tau - now, new
if retry > 0 then at = tat else retry = 0 end
if retry == 0 or ARGV[6] == '1' then
  redis.call('SET', KEYS[1], string.format('%d', new), 'PX', math.ceil((new - now) / 1000 - 1e-9) + 1)
end
local room = now + tau - at
local rem = math.max(0, math.floor(room / T + 1e-6))
local reset = math.ceil(T - 1e-9)
if room < tau then reset = math.max(1, math.ceil((rem + 1) * T - room - 1e-9)) end
return {now, rem, reset, retry}
`)

// logScript decides a call of a sliding-log policy with one window and no
// includes: the set is trimmed to the window, so its size is the window's
// use and its first member the oldest unit in it.
//
// KEYS: [1] the policy's key. ARGV: [1] n; [2] the member id; [3] the
// window in µs; [4] N; [5] consume-denied (0/1); [6] the key's TTL in ms
// (the window, rounded up, and 1 ms).
//
// Reply: {now, remaining, reset, retry}, as gcraScript's.
//
// Scores are passed to Redis as Lua numbers, which Redis formats exactly
// (17 significant digits, or the shortest exact form), not with tostring.
var logScript = newScript(`
local t = redis.call('TIME')
local now = t[1] * 1000000 + t[2]
local key, n, per, lim = KEYS[1], tonumber(ARGV[1]), tonumber(ARGV[3]), tonumber(ARGV[4])
redis.call('ZREMRANGEBYSCORE', key, '-inf', now - per)
local used = redis.call('ZCARD', key)
local oldest = now
if used > 0 then oldest = tonumber(redis.call('ZRANGE', key, 0, 0, 'WITHSCORES')[2]) end
local retry, rem = 0, lim - used
if used + n > lim then
  local k = used + n - lim - 1
  retry = tonumber(redis.call('ZRANGE', key, k, k, 'WITHSCORES')[2]) + per - now
end
if retry == 0 or ARGV[5] == '1' then
  -- As decideScript's log_add: in chunks, and the newest lim kept.
  if n == 1 then
    redis.call('ZADD', key, now, ARGV[2])
  else
    for j = 1, n, 1000 do
      local args = {}
      for k = j, math.min(n, j + 999) do
        args[#args + 1] = now
        args[#args + 1] = ARGV[2] .. ':' .. k
      end
      redis.call('ZADD', key, unpack(args))
    end
  end
  local over = redis.call('ZCARD', key) - lim
  if over > 0 then redis.call('ZREMRANGEBYRANK', key, 0, over - 1) end
  redis.call('PEXPIRE', key, ARGV[6])
  rem = math.max(0, rem - n)
end
return {now, rem, oldest + per - now, retry}
`)

// counterScript decides a call of a sliding-window-counter policy with one
// window and no includes.
//
// KEYS: [1] the policy's key. ARGV: [1] n; [2] unused (empty); [3] the
// window in µs; [4] N; [5] consume-denied (0/1); [6] the key's TTL in ms
// (two windows, rounded up, and 1 ms).
//
// Reply: {now, remaining, reset, retry}, as gcraScript's (a denied call's
// retry is at least 1).
//
// State: "<fixed-window index> <count> <previous count>", as decideScript
// keeps it (it reads the first window of a value left by more).
var counterScript = newScript(`
local t = redis.call('TIME')
local now = t[1] * 1000000 + t[2]
local n, per, lim, eps = tonumber(ARGV[1]), tonumber(ARGV[3]), tonumber(ARGV[4]), 1e-9
local bucket = math.floor(now / per)
local cur, prev = 0, 0
local v = redis.call('GET', KEYS[1])
if v then
  local b, c, p = string.match(v, '^(%d+) (%d+) (%d+)')
  b = tonumber(b)
  -- A stored window later than Redis's clock counts as the current one,
  -- with the window it stored before it (as decideScript's counter_check).
  if b and b > bucket then cur = tonumber(c) + tonumber(p) elseif b == bucket then cur, prev = tonumber(c), tonumber(p) elseif b == bucket - 1 then prev = tonumber(c) end
end
local elapsed = now - bucket * per
-- until_est: µs until the estimate with count c falls to target (as
-- decideScript's).
local function until_est(target, c)
  if prev * (per - elapsed) / per + c <= target + eps then return 0 end
  if c <= target and prev > 0 then
    return math.ceil(per - (target - c) * per / prev - elapsed - eps)
  end
  if target < 0 then return per - elapsed end
  local e2 = 0
  if c > 0 then e2 = per - target * per / c end
  if e2 < 0 then e2 = 0 end
  return math.ceil(per - elapsed + e2 - eps)
end
local est = prev * (per - elapsed) / per + cur
local rem, reset, retry
if est + n <= lim + eps then
  rem = math.floor(lim - est - n + eps)
  reset, retry = until_est(lim - rem - 1, cur + n), 0
else
  rem = math.max(0, math.floor(lim - est + eps))
  retry = math.max(1, until_est(lim - n, cur))
  reset = until_est(lim - rem - 1, cur)
end
if retry == 0 or ARGV[5] == '1' then
  redis.call('SET', KEYS[1], string.format('%d %d %d', bucket, cur + n, prev), 'PX', ARGV[6])
end
return {now, rem, reset, retry}
`)

// script is a Lua script and its SHA1, which EVALSHA names it by.
type script struct {
	src, hash string
}

func newScript(src string) *script {
	h := sha1.Sum([]byte(src))
	return &script{src: src, hash: hex.EncodeToString(h[:])}
}

// scriptArgs returns the part of decideScript's ARGV that describes p's
// key.
func scriptArgs(p *policy) []any {
	consume := "0"
	if p.ConsumeDenied {
		consume = "1"
	}
	args := []any{strconv.Itoa(int(p.Algorithm)), consume, strconv.Itoa(len(p.Limits))}
	for _, l := range p.Limits {
		args = append(args, strconv.Itoa(l.N), strconv.FormatInt(l.Per.Microseconds(), 10), strconv.Itoa(l.Burst))
	}
	return args
}

// pickScript chooses the script for a call of p (resolved) and the ARGV
// that follow n and the member id.
func pickScript(p *policy) (*script, []any) {
	consume := "0"
	if p.ConsumeDenied {
		consume = "1"
	}
	if len(p.all) == 1 && len(p.Limits) == 1 {
		l := p.Limits[0]
		per := l.Per.Microseconds()
		switch p.Algorithm {
		case GCRA:
			return gcraScript, []any{strconv.FormatInt(per, 10), strconv.Itoa(l.N), strconv.Itoa(l.Burst), consume}
		case SlidingLog:
			ttl := (per+999)/1000 + 1
			return logScript, []any{strconv.FormatInt(per, 10), strconv.Itoa(l.N), consume, strconv.FormatInt(ttl, 10)}
		case SlidingWindow:
			ttl := (2*per+999)/1000 + 1
			return counterScript, []any{strconv.FormatInt(per, 10), strconv.Itoa(l.N), consume, strconv.FormatInt(ttl, 10)}
		}
	}
	var args []any
	for _, q := range p.all {
		args = append(args, q.args...)
	}
	return decideScript, args
}

// errReply reports a reply of the script that does not have its shape.
var errReply = errors.New("ratelimit: unexpected script reply")

// eval runs p's script for a call of cost n by the actor whose hash is sum,
// and returns its reply, checked for length: decideScript's, or, for
// p.single, the one window of gcraScript, logScript and counterScript.
func (l *Limiter) eval(ctx context.Context, p *policy, sum actorSum, n int) ([]int64, error) {
	args := make([]any, 0, 5+len(p.all)+len(p.argv))
	args = append(args, p.evalsha[:]...)
	for _, q := range p.all {
		args = append(args, key(l.o.Namespace, sum, q.Name))
	}
	id := ""
	if p.logs {
		var b [32]byte
		id = string(strconv.AppendUint(append(b[:0], l.idPrefix...), l.seq.Add(1), 36))
	}
	args = append(args, n, id)
	args = append(args, p.argv...)
	cmd := redis.NewIntSliceCmd(ctx, args...)
	err := l.o.Client.Process(ctx, cmd)
	if err != nil && redis.HasErrorPrefix(err, "NOSCRIPT") {
		// Not loaded on this node yet (new, restarted, or another Cluster
		// master): EVAL loads it.
		args[0], args[1] = "eval", p.script.src
		cmd = redis.NewIntSliceCmd(ctx, args...)
		err = l.o.Client.Process(ctx, cmd)
	}
	if err != nil {
		return nil, err
	}
	v := cmd.Val()
	want := 2 + 3*p.nwin
	if p.single {
		want = 4
	}
	if len(v) != want {
		return nil, fmt.Errorf("%w: %d integers, want %d", errReply, len(v), want)
	}
	return v, nil
}
