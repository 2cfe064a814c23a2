package goredis

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/tiercache/tiercache/tier"
)

var (
	_ tier.Leaser       = (*Backend)(nil)
	_ tier.WriteCarrier = (*Backend)(nil)
	_ tier.TagStore     = (*Backend)(nil)
)

// leaseScript takes a lease: KEYS[1] the key; ARGV: lease marker, ttl ms,
// max bytes, replace ("1"/"0"), lease prefix. It returns nil when it stored
// the marker, else what the key holds (at most ARGV[3]+1 bytes of it) and
// the key's PTTL. A replaced value is kept after the marker and a newline.
var leaseScript = redis.NewScript(`
local v = redis.call('GETRANGE', KEYS[1], 0, tonumber(ARGV[3]))
if v == '' then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return false
end
if ARGV[4] == '1' and string.sub(v, 1, string.len(ARGV[5])) ~= ARGV[5] then
  redis.call('SET', KEYS[1], ARGV[1] .. '\n' .. v, 'PX', ARGV[2])
  return false
end
return {v, redis.call('PTTL', KEYS[1])}
`)

// holdsLease is the Lua test that KEYS[1] holds the marker ARGV[1], alone
// or followed by a kept value.
const holdsLease = `
local m = redis.call('GETRANGE', KEYS[1], 0, string.len(ARGV[1]))
local held = (m == ARGV[1] or m == ARGV[1] .. '\n')
`

// setLeasedScript writes a value only if the key still holds exactly the
// lease marker: KEYS[1] the key; ARGV: marker, value, ttl ms. It is the
// fenced write for a key whose side key could land on another shard (see
// [Backend.sideKey]): a value that goes through Lua costs Redis about twice
// what moveLeasedScript and a plain SET cost together.
var setLeasedScript = redis.NewScript(holdsLease + `
if held then
  redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
  return 1
end
return 0
`)

// moveLeasedScript is the fenced write of a value the same pipeline has
// just stored under a side key (for sideKeyTTL): KEYS[1] the key, KEYS[2]
// the side key; ARGV: marker, ttl ms. If KEYS[1] still holds the marker,
// the side key is renamed over it and given the value's TTL (1), else the
// side key is deleted (0). A missing side key (its SET failed or went to
// another server) releases the lease: the key is deleted (-1). On any
// error the side key is deleted and the error returned; should the script
// not run at all, the side key expires within sideKeyTTL.
var moveLeasedScript = redis.NewScript(`
local m = redis.pcall('GETRANGE', KEYS[1], 0, string.len(ARGV[1]))
if type(m) == 'table' and m.err then
  redis.call('DEL', KEYS[2])
  return m
end
if m ~= ARGV[1] and m ~= ARGV[1] .. '\n' then
  redis.call('DEL', KEYS[2])
  return 0
end
local r = redis.pcall('RENAME', KEYS[2], KEYS[1])
if r.err then
  if string.find(r.err, 'no such key', 1, true) then
    redis.call('DEL', KEYS[1])
    return -1
  end
  redis.call('DEL', KEYS[2])
  return r
end
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return 1
`)

// sideKeyTTL bounds how long a side key outlives a write whose script did
// not run (the connection broke after the SET, or the script was refused).
const sideKeyTTL = 10 * time.Second

// errSideKeyMissing is the error of a leased write whose side key the
// script did not find next to the key.
var errSideKeyMissing = errors.New("the value's side key was not found next to the key (a client behind a proxy that spreads keys over servers by name needs Options.ValueThroughScript)")

// sideMark separates a key from the lease in the name of its side key.
const sideMark = "\x00tiercache-value:"

// sideKey is the key a leased write of key stores its value under before
// moveLeasedScript renames it over key: key, sideMark and the lease's
// random part, so it starts as key does (an ACL key pattern that grants
// key grants it). It is "" when the side key might not share key's shard:
// on a Cluster or Ring client, a key without a hash tag, and with
// Options.ValueThroughScript. Such a write sends its value through
// setLeasedScript instead.
func (b *Backend) sideKey(key, lease string) string {
	if b.throughScript || b.sharded && !hasHashTag(key) {
		return ""
	}
	return key + sideMark + strings.TrimPrefix(lease, tier.LeasePrefix)
}

// hasHashTag reports whether key has a Cluster hash tag: a '{' followed,
// not at once, by a '}'. Then only the tag picks the key's slot (and a Ring
// client's shard), so anything appended to key stays on its shard.
func hasHashTag(key string) bool {
	i := strings.IndexByte(key, '{')
	return i >= 0 && strings.IndexByte(key[i+1:], '}') > 0
}

// releaseScript gives a lease back: if KEYS[1] still holds the marker
// ARGV[1], the value kept after it is put back for ARGV[2] ms (when > 0),
// else the key is deleted.
var releaseScript = redis.NewScript(holdsLease + `
if not held then
  return 0
end
local keep = tonumber(ARGV[2])
local full = redis.call('GET', KEYS[1])
local kept = string.sub(full, string.len(ARGV[1]) + 2)
if keep > 0 and kept ~= '' then
  redis.call('SET', KEYS[1], kept, 'PX', keep)
  return 1
end
return redis.call('DEL', KEYS[1])
`)

// touchTagScript keeps the later of two invalidation times: KEYS[1] the tag
// key; ARGV: time (unix nanos), ttl ms.
// It is sent as EVAL (not EVALSHA) because it runs inside a pipeline, where
// go-redis cannot fall back from NOSCRIPT; tag invalidations are rare.
const touchTagScript = `
local cur = tonumber(redis.call('GET', KEYS[1]) or '0') or 0
if tonumber(ARGV[1]) > cur then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
end
return 1
`

func ms(d time.Duration) int64 { return max(1, d.Milliseconds()) }

// Lease implements tier.Leaser in one round trip, two when it finds
// another instance's marker. Without replace it is a pipeline of two plain
// commands, SET NX of the marker and a bounded GETRANGE, which cost Redis a
// fraction of a script call: this is the first round trip of every miss of
// a cache whose reads mostly miss. They need not be atomic: if SET NX
// stored the marker the lease is ours whatever GETRANGE read; if not,
// GETRANGE reads what the key holds, and should the key have vanished in
// between, the script decides. With replace it is a Lua script.
//
// Another instance's marker that cannot be a live lease is reported as
// bad bytes ([tier.ErrCorrupt]), which the cache deletes and replaces: see
// [deadLease]. Telling needs the marker's TTL, read in a second round trip
// only when a marker was found (see [Backend.leaseLeft]).
func (b *Backend) Lease(ctx context.Context, key, lease string, ttl time.Duration, replace bool) ([]byte, error) {
	if !replace {
		l := []tier.LeaseRequest{{Key: key, Lease: lease, TTL: ttl}}
		b.LeaseMany(ctx, l, nil)
		return l[0].Cur, l[0].Err
	}
	return b.leaseScripted(ctx, key, lease, ttl, "1")
}

// LeaseMany implements tier.WriteCarrier: the leases as Lease without
// replace, in one pipeline carrying writes (each write's commands, see
// [Backend.SetLeasedMany], sent first). A write the server refuses with
// NOSCRIPT (its script cache was flushed, or a replica took over) is sent
// again after them.
func (b *Backend) LeaseMany(ctx context.Context, leases []tier.LeaseRequest, writes []tier.LeasedWrite) {
	sent := make([]sentWrite, len(writes))
	cmds := make([]leaseCmds, len(leases))
	_, _ = b.c.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i := range writes {
			sent[i] = b.queueSetLeased(ctx, p, &writes[i], false)
		}
		for i, l := range leases {
			cmds[i] = leaseCmds{
				set: p.SetNX(ctx, l.Key, l.Lease, l.TTL),
				get: p.GetRange(ctx, l.Key, 0, b.readEnd()),
			}
		}
		return nil
	})
	b.setLeasedResults(ctx, writes, sent)
	var markers []int // the leases that found a marker whose TTL is unread
	for i := range leases {
		l := &leases[i]
		var marker bool
		l.Cur, marker, l.Err = b.leaseResult(ctx, l, cmds[i])
		if marker {
			markers = append(markers, i)
		}
	}
	if len(markers) > 0 {
		b.leaseLeft(ctx, leases, markers)
	}
}

// leaseCmds is one lease's commands in a pipeline: SET NX of the marker
// and a bounded GETRANGE.
type leaseCmds struct {
	set *redis.BoolCmd
	get *redis.StringCmd
}

// leaseResult is what Lease returns for l, from its commands c; marker
// reports that cur is another instance's marker whose TTL leaseLeft must
// still read.
func (b *Backend) leaseResult(ctx context.Context, l *tier.LeaseRequest, c leaseCmds) (cur []byte, marker bool, err error) {
	if c.set.Err() == nil && c.set.Val() {
		return nil, false, nil
	}
	if err := cmdsErr(c.set, c.get); err != nil && !isWrongType(err) {
		return nil, false, b.translate("lease", err)
	}
	if v, err := b.result(c.get.Result()); !errors.Is(err, tier.ErrNotFound) {
		return v, err == nil && strings.HasPrefix(string(v), tier.LeasePrefix), err
	}
	// The key vanished between SET NX and GETRANGE: the script decides (it
	// reads a marker's TTL itself).
	cur, err = b.leaseScripted(ctx, l.Key, l.Lease, l.TTL, "0")
	return cur, false, err
}

// leaseLeft reads, in one round trip, the time left on the key of each
// lease at leases[i] (i in which) whose Cur is another instance's marker,
// and makes those that cannot be live leases (see [deadLease]) bad bytes.
// The whole batch waits for it: it is paid only when a marker is found,
// during another instance's load or refresh of the key.
//
// PTTL goes before a GETRANGE of the marker: a marker is written once, so
// if the key still starts with it after PTTL, that PTTL was the marker's.
// A key that no longer does (its holder wrote or released it, or a Delete
// removed it) is left as a live marker: the cache then waits for the
// value, the safe direction, and never deletes a value written since. So
// is every marker when ctx ended before the round trip was answered; other
// failures fail those leases with their error (NOPERM without the +pttl
// grant, say).
func (b *Backend) leaseLeft(ctx context.Context, leases []tier.LeaseRequest, which []int) {
	type check struct {
		marker string
		left   *redis.DurationCmd
		head   *redis.StringCmd
	}
	checks := make([]check, len(which))
	_, _ = b.c.Pipelined(ctx, func(p redis.Pipeliner) error {
		for j, i := range which {
			marker, _, _ := strings.Cut(string(leases[i].Cur), "\n")
			checks[j] = check{
				marker: marker,
				left:   p.PTTL(ctx, leases[i].Key),
				head:   p.GetRange(ctx, leases[i].Key, 0, int64(len(marker))-1),
			}
		}
		return nil
	})
	for j, i := range which {
		l, c := &leases[i], &checks[j]
		if err := cmdsErr(c.left, c.head); err != nil {
			if ctx.Err() == nil {
				l.Cur, l.Err = nil, b.translate("lease", err)
			}
			continue
		}
		if c.head.Val() != c.marker {
			continue
		}
		l.Cur, l.Err = b.live(l.Cur, nil, c.left.Val(), l.TTL)
	}
}

// cmdsErr is the first error of cmds.
func cmdsErr(cmds ...redis.Cmder) error {
	for _, c := range cmds {
		if err := c.Err(); err != nil {
			return err
		}
	}
	return nil
}

// leaseScripted takes the lease with the Lua script (rep "1": replace).
func (b *Backend) leaseScripted(ctx context.Context, key, lease string, ttl time.Duration, rep string) ([]byte, error) {
	res, err := leaseScript.Run(ctx, b.c, []string{key}, lease, ms(ttl), b.readEnd(), rep, tier.LeasePrefix).Slice()
	if errors.Is(err, redis.Nil) {
		return nil, nil
	}
	if err != nil {
		return b.result("", err)
	}
	s, _ := res[0].(string)
	pttl, _ := res[1].(int64)
	left := time.Duration(pttl) // -1, -2 as PTTL's DurationCmd gives them
	if pttl > 0 {
		left *= time.Millisecond
	}
	v, err := b.result(s, nil)
	return b.live(v, err, left, ttl)
}

// live passes on what Lease found (v, err), unless v is a lease marker
// that cannot be live (see deadLease): that is bad bytes.
func (b *Backend) live(v []byte, err error, left, ttl time.Duration) ([]byte, error) {
	if err == nil && deadLease(v, left, ttl) {
		what := "no TTL"
		if left >= 0 {
			what = fmt.Sprintf("%v left, more than twice the lease TTL %v", left.Round(time.Millisecond), ttl)
		}
		return nil, fmt.Errorf("goredis: lease: %w: a lease marker with %s cannot be a live lease", tier.ErrCorrupt, what)
	}
	return v, err
}

// deadLease reports whether v is a lease marker that cannot belong to a
// load in progress, given the time left before its key expires (negative:
// no TTL, or no key) and the lease TTL this cache uses (its LoadTimeout
// plus L2Timeout). A load's marker is always stored with such a TTL, so one
// without a TTL (planted by hand, or PERSISTed) or with more than twice
// ours left would otherwise make every miss of the key wait LeaseWait for
// a value that never comes, and keep the key from L2 for good. Replacing a
// live marker by mistake (an instance configured with a far longer
// LoadTimeout) is safe: its holder's write is fenced off, at the cost of
// one more load.
func deadLease(v []byte, left, ttl time.Duration) bool {
	if !strings.HasPrefix(string(v), tier.LeasePrefix) {
		return false
	}
	const noTTL = -1 // PTTL of a key without a TTL; -2 (gone since the read) is left alone
	return left == noTTL || left > 2*ttl
}

// SetLeased implements tier.Leaser in one round trip: SET of the value
// under its side key and the moveLeased script, pipelined (or, for a key
// whose side key could be on another shard, the setLeased script).
func (b *Backend) SetLeased(ctx context.Context, key, lease string, value []byte, ttl time.Duration) (bool, error) {
	w := []tier.LeasedWrite{{Key: key, Lease: lease, Value: value, TTL: ttl}}
	b.SetLeasedMany(ctx, w)
	return w[0].Written, w[0].Err
}

// SetLeasedMany implements tier.WriteCarrier: the writes in one pipeline.
func (b *Backend) SetLeasedMany(ctx context.Context, writes []tier.LeasedWrite) {
	sent := make([]sentWrite, len(writes))
	_, _ = b.c.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i := range writes {
			sent[i] = b.queueSetLeased(ctx, p, &writes[i], false)
		}
		return nil
	})
	b.setLeasedResults(ctx, writes, sent)
}

// sentWrite is one leased write's commands in a pipeline: the SET of its
// side key (nil without one) and the script call.
type sentWrite struct {
	side   *redis.StatusCmd
	script *redis.Cmd
}

// queueSetLeased adds w to the pipeline p: the SET of its value under its
// side key and the moveLeased script, or the setLeased script when it has
// no side key; the script by its SHA (EVALSHA), or with its source (EVAL)
// when eval is set.
func (b *Backend) queueSetLeased(ctx context.Context, p redis.Pipeliner, w *tier.LeasedWrite, eval bool) sentWrite {
	run := (*redis.Script).EvalSha
	if eval {
		run = (*redis.Script).Eval
	}
	side := b.sideKey(w.Key, w.Lease)
	if side == "" {
		return sentWrite{script: run(setLeasedScript, ctx, p, []string{w.Key}, w.Lease, w.Value, ms(w.TTL))}
	}
	return sentWrite{
		side:   p.Set(ctx, side, w.Value, sideKeyTTL),
		script: run(moveLeasedScript, ctx, p, []string{w.Key, side}, w.Lease, ms(w.TTL)),
	}
}

// setLeasedResults sets each write's outcome from its commands in sent.
// The writes refused with NOSCRIPT (the server's script cache was flushed,
// or a replica took over) are sent again in one more round trip, with the
// script's source (EVAL).
func (b *Backend) setLeasedResults(ctx context.Context, writes []tier.LeasedWrite, sent []sentWrite) {
	var again []int
	for i, s := range sent {
		if err := s.script.Err(); err != nil && redis.HasErrorPrefix(err, "NOSCRIPT") {
			again = append(again, i)
			continue
		}
		b.setLeasedResult(&writes[i], s)
	}
	if len(again) == 0 {
		return
	}
	_, _ = b.c.Pipelined(ctx, func(p redis.Pipeliner) error {
		for _, i := range again {
			sent[i] = b.queueSetLeased(ctx, p, &writes[i], true)
		}
		return nil
	})
	for _, i := range again {
		b.setLeasedResult(&writes[i], sent[i])
	}
}

// setLeasedResult sets w's outcome from s, its commands. A failed SET of
// the side key is the write's error (the script then found no side key
// and released the lease), as is a side key the script did not find.
func (b *Backend) setLeasedResult(w *tier.LeasedWrite, s sentWrite) {
	n, err := s.script.Int()
	switch {
	case s.side != nil && s.side.Err() != nil:
		err = s.side.Err()
	case err == nil && n == -1:
		err = errSideKeyMissing
	}
	w.Written, w.Err = n == 1 && err == nil, b.translate("set leased", err)
}

// ReleaseLease implements tier.Leaser in one round trip (a Lua script).
func (b *Backend) ReleaseLease(ctx context.Context, key, lease string, keep time.Duration) error {
	var ms int64
	if keep > 0 {
		ms = max(1, keep.Milliseconds())
	}
	return b.translate("release lease", releaseScript.Run(ctx, b.c, []string{key}, lease, ms).Err())
}

// GetTagged implements tier.TagStore: the key and its tags' times in one
// pipelined round trip (one command per key, so it works on a Cluster).
func (b *Backend) GetTagged(ctx context.Context, key string, tagKeys []string) ([]byte, []int64, error) {
	var get *redis.StringCmd
	tags := make([]*redis.StringCmd, len(tagKeys))
	_, err := b.c.Pipelined(ctx, func(p redis.Pipeliner) error {
		get = p.GetRange(ctx, key, 0, b.readEnd())
		for i, k := range tagKeys {
			tags[i] = p.Get(ctx, k)
		}
		return nil
	})
	if err != nil && !errors.Is(err, redis.Nil) && !isWrongType(err) {
		return nil, nil, b.translate("get tagged", err)
	}
	at := make([]int64, len(tagKeys))
	for i, cmd := range tags {
		if s, err := cmd.Result(); err == nil {
			at[i], _ = strconv.ParseInt(s, 10, 64) // garbage under a tag key reads as "never"
		}
	}
	v, err := b.result(get.Result())
	return v, at, err
}

// TouchTags implements tier.TagStore, one script call per tag, pipelined.
func (b *Backend) TouchTags(ctx context.Context, tagKeys []string, at int64, ttl time.Duration) error {
	if b.wait > 0 {
		return b.replicated(ctx, "touch tags", tagKeys, func(p redis.Pipeliner, keys []string) {
			for _, k := range keys {
				p.Eval(ctx, touchTagScript, []string{k}, at, ms(ttl))
			}
		})
	}
	_, err := b.c.Pipelined(ctx, func(p redis.Pipeliner) error {
		for _, k := range tagKeys {
			p.Eval(ctx, touchTagScript, []string{k}, at, ms(ttl))
		}
		return nil
	})
	return b.translate("touch tags", err)
}

var _ tier.Epocher = (*Backend)(nil)

// Epoch implements tier.Epocher: the counter under key, 0 if absent.
func (b *Backend) Epoch(ctx context.Context, key string) (int64, error) {
	n, err := b.c.Get(ctx, key).Int64()
	if errors.Is(err, redis.Nil) {
		return 0, nil
	}
	if err != nil {
		return 0, b.translate("epoch", err)
	}
	return n, nil
}

// NextEpoch implements tier.Epocher with INCR.
func (b *Backend) NextEpoch(ctx context.Context, key string) (int64, error) {
	if b.wait > 0 {
		var cmd *redis.IntCmd
		if err := b.replicated(ctx, "next epoch", []string{key}, func(p redis.Pipeliner, keys []string) {
			cmd = p.Incr(ctx, keys[0])
		}); err != nil {
			return 0, err
		}
		return cmd.Val(), nil
	}
	n, err := b.c.Incr(ctx, key).Result()
	return n, b.translate("next epoch", err)
}
