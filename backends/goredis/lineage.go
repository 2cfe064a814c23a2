package goredis

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/tiercache/tiercache/tier"
)

var (
	_ tier.Lineager    = (*Backend)(nil)
	_ tier.EpochRaiser = (*Backend)(nil)
)

// Lineage implements tier.Lineager: a token made of each master's run_id
// and master_replid (INFO server, replication), over every master of a
// Cluster (or shard of a Ring). A restarted server has a new run_id; a
// promoted replica is another server, and a server that changes role gets
// a new replication id: every event after which acknowledged writes may be
// missing changes the token. Adding or removing a master changes it too (a
// harmless extra epoch move).
func (b *Backend) Lineage(ctx context.Context) (string, error) {
	var (
		mu    sync.Mutex
		parts []string
	)
	one := func(ctx context.Context, c *redis.Client) error {
		tok, err := nodeLineage(ctx, c)
		if err != nil {
			return err
		}
		mu.Lock()
		parts = append(parts, tok)
		mu.Unlock()
		return nil
	}
	var err error
	switch c := b.c.(type) {
	case *redis.ClusterClient:
		err = c.ForEachMaster(ctx, one)
	case *redis.Ring:
		err = c.ForEachShard(ctx, one)
	default:
		var tok string
		tok, err = nodeLineage(ctx, b.c)
		parts = append(parts, tok)
	}
	if err != nil {
		return "", b.translate("lineage", err)
	}
	slices.Sort(parts)
	return strings.Join(parts, ","), nil
}

// nodeLineage is "<run_id>/<master_replid>" of the server c talks to.
func nodeLineage(ctx context.Context, c redis.Cmdable) (string, error) {
	info, err := c.Info(ctx, "server", "replication").Result()
	if err != nil {
		return "", err
	}
	var runID, replID string
	for line := range strings.SplitSeq(info, "\n") {
		line = strings.TrimSpace(line)
		if v, ok := strings.CutPrefix(line, "run_id:"); ok {
			runID = v
		} else if v, ok := strings.CutPrefix(line, "master_replid:"); ok {
			replID = v
		}
	}
	if runID == "" {
		return "", errors.New("INFO has no run_id")
	}
	return runID + "/" + replID, nil
}

// raiseEpochScript: KEYS[1] the epoch counter; ARGV[1] the epoch the
// caller knows. If the counter is above it, someone already moved past it
// and it is returned as it is; otherwise it becomes max(counter, known)+1.
const raiseEpochScript = `
local cur = tonumber(redis.call('GET', KEYS[1]) or '0') or 0
local known = tonumber(ARGV[1])
if cur > known then
  return cur
end
local n = math.max(cur, known) + 1
redis.call('SET', KEYS[1], n)
return n
`

var raiseEpoch = redis.NewScript(raiseEpochScript)

// RaiseEpoch implements tier.EpochRaiser in one round trip (a Lua script on
// the counter's own key, so it runs on a Cluster).
func (b *Backend) RaiseEpoch(ctx context.Context, key string, known int64) (int64, error) {
	if b.wait > 0 {
		var cmd *redis.Cmd
		err := b.replicated(ctx, "raise epoch", []string{key}, func(p redis.Pipeliner, keys []string) {
			cmd = p.Eval(ctx, raiseEpochScript, keys, known)
		})
		if err != nil {
			return 0, err
		}
		n, err := cmd.Int64()
		return n, b.translate("raise epoch", err)
	}
	n, err := raiseEpoch.Run(ctx, b.c, []string{key}, known).Int64()
	if err != nil {
		return 0, b.translate("raise epoch", err)
	}
	return n, nil
}

// ErrNotReplicated is matched by the error of a write that fewer replicas
// than Options.WaitReplicas acknowledged within the call's deadline. The
// write was made on the master; the cache keeps it for replay.
var ErrNotReplicated = errors.New("goredis: write not acknowledged by enough replicas")

// replicated runs write (commands on keys) and then WAIT for
// Options.WaitReplicas replicas on the same connection: a pipeline on the
// master of the keys (grouped per master on a Cluster). WAIT is given most
// of what is left of ctx's deadline (1 s without one).
func (b *Backend) replicated(ctx context.Context, op string, keys []string, write func(p redis.Pipeliner, keys []string)) error {
	type group struct {
		c    redis.Cmdable
		keys []string
	}
	var groups []*group
	if b.cluster != nil {
		by := map[string]*group{}
		for _, k := range keys {
			m, err := b.cluster.MasterForKey(ctx, k)
			if err != nil {
				return b.translate(op, err)
			}
			addr := m.Options().Addr
			if by[addr] == nil {
				by[addr] = &group{c: m}
				groups = append(groups, by[addr])
			}
			by[addr].keys = append(by[addr].keys, k)
		}
	} else {
		groups = []*group{{c: b.c, keys: keys}}
	}
	timeout := waitTimeout(ctx)
	for _, g := range groups {
		var acks *redis.Cmd
		_, err := g.c.Pipelined(ctx, func(p redis.Pipeliner) error {
			write(p, g.keys)
			acks = p.Do(ctx, "WAIT", b.wait, max(timeout.Milliseconds(), 1))
			return nil
		})
		if err != nil && !errors.Is(err, redis.Nil) {
			return b.translate(op, err)
		}
		if n, _ := acks.Int64(); n < int64(b.wait) {
			return fmt.Errorf("goredis: %s: %w: %d of %d replicas within %v", op, ErrNotReplicated, n, b.wait, timeout)
		}
	}
	return nil
}

// waitTimeout is how long WAIT may block: 3/4 of what is left of ctx's
// deadline, so that its answer comes back before the deadline; 1 s without
// a deadline.
func waitTimeout(ctx context.Context) time.Duration {
	dl, ok := ctx.Deadline()
	if !ok {
		return time.Second
	}
	return max(time.Until(dl)*3/4, time.Millisecond)
}
