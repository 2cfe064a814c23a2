package ratelimit

import (
	"errors"
	"fmt"
	"strconv"

	"github.com/redis/go-redis/v9"
)

// The Redis side: one script decides a whole call, for every key it touches
// (a policy and the policies it includes, all under the actor's hash tag),
// on Redis's clock, in one atomic step.
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
var decideScript = redis.NewScript(`
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

local function log_apply(s)
  local args = {}
  if n == 1 then
    args = {now, id}
  else
    for j = 1, n do
      args[#args + 1] = now
      args[#args + 1] = id .. ':' .. j
    end
  end
  redis.call('ZADD', s.key, unpack(args))
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
    if b == bucket then cur, prev = c, p elseif b == bucket - 1 then prev = c end
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
    lim = {}, per = {}, burst = {}, maxper = 0, ok = true, rem_ok = {}, rem_no = {}, reset = {}, retry = {}}
  a = a + 3
  for i = 1, s.nw do
    s.lim[i], s.per[i], s.burst[i] = tonumber(ARGV[a]), tonumber(ARGV[a + 1]), tonumber(ARGV[a + 2])
    if s.per[i] > s.maxper then s.maxper = s.per[i] end
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

// scriptArgs returns the part of ARGV that describes p's key.
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

// errReply reports a reply of the script that does not have its shape.
var errReply = errors.New("ratelimit: unexpected script reply")

// reply is the script's answer.
type reply struct {
	nowMicros int64
	allowed   bool
	// per window of every key, in order: remaining, reset µs, retry µs.
	windows []int64
}

func parseReply(v any, windows int) (reply, error) {
	a, ok := v.([]any)
	if !ok || len(a) != 2+3*windows {
		return reply{}, fmt.Errorf("%w: %T of length %d", errReply, v, len(a))
	}
	var r reply
	r.windows = make([]int64, 3*windows)
	for i, x := range a {
		n, ok := x.(int64)
		if !ok {
			return reply{}, fmt.Errorf("%w: element %d is %T", errReply, i, x)
		}
		switch i {
		case 0:
			r.nowMicros = n
		case 1:
			r.allowed = n == 1
		default:
			r.windows[i-2] = n
		}
	}
	return r, nil
}
