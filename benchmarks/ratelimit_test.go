package benchmarks

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-redis/redis_rate/v10"
	"github.com/redis/go-redis/v9"

	"github.com/tiercache/tiercache/ratelimit"
)

// BenchmarkRateLimit compares a decision of package ratelimit with one of
// go-redis/redis_rate v10 (GCRA in one Lua script, the Go anchor), on the
// run's private Redis, serial and parallel (8 goroutines per core):
//
//   - traffic=allowed: every call admitted (1,000 actors in turn, a quota
//     no call reaches); the latency of an allowed decision, one round trip.
//   - traffic=denied: every call refused (100 actors whose quota is used
//     up): redis_rate asks Redis each time, ratelimit answers from its
//     denial cache until the retry time Redis gave; impl=*-nocache
//     turns the cache off.
//   - traffic=flood95: 95% of the calls from the 100 refused actors, 5%
//     from 10,000 actors with room, interleaved.
//
// impl=ratelimit-gcra is the same algorithm as redis_rate; impl=ratelimit-log
// is the exact sliding log. impl=zset-pipeline (allowed traffic only) is
// the floor of a sorted-set log: the usual non-atomic one, a pipeline of
// ZREMRANGEBYSCORE, ZADD, ZCARD and PEXPIRE on the client's clock, which
// adds a member whether or not it fits (it cannot refuse without a
// script). Metrics beside ns/op: decisions/s, and Redis's own CPU per
// decision (redis-cpu-us/op, from INFO cpu, the whole server: parsing,
// networking and the script) and the commands' time per call
// (redis-cmd-us/op, from INFO commandstats: EVAL and EVALSHA, or the
// pipeline's four commands).
func BenchmarkRateLimit(b *testing.B) {
	for _, traffic := range []string{"allowed", "denied", "flood95"} {
		for _, mode := range []string{"serial", "parallel"} {
			for _, impl := range []string{"redis_rate", "ratelimit-gcra", "ratelimit-log", "ratelimit-log-nocache", "zset-pipeline"} {
				if traffic == "allowed" && impl == "ratelimit-log-nocache" {
					continue // the same as ratelimit-log: nothing is denied
				}
				if traffic != "allowed" && impl == "zset-pipeline" {
					continue // it cannot refuse: it counts every call
				}
				b.Run(fmt.Sprintf("traffic=%s/mode=%s/impl=%s", traffic, mode, impl), func(b *testing.B) {
					benchRateLimit(b, traffic, mode, impl)
				})
			}
		}
	}
}

// decider is one call of one contender: it reports whether it admitted.
type decider func(ctx context.Context, actor string) bool

var rlRun atomic.Int64 // makes each sub-benchmark's keys its own

func benchRateLimit(b *testing.B, traffic, mode, impl string) {
	rdb := newRedis(b)
	ctx := context.Background()
	prefix := fmt.Sprintf("rlbench-%s-%d", runID, rlRun.Add(1))
	quota, per := ratelimit.MaxSlidingLogLimit, time.Second // allowed: never reached
	if traffic != "allowed" {
		quota, per = 100, time.Hour
	}
	decide, exhaust, cmds := newRateContender(b, rdb, impl, prefix, quota, per)

	const attackers, users, fresh = 100, 10_000, 1000
	attacker := make([]string, attackers)
	for i := range attacker {
		attacker[i] = "attacker:" + strconv.Itoa(i)
		if traffic != "allowed" {
			exhaust(attacker[i])
			decide(ctx, attacker[i]) // the first refusal, which ratelimit caches
		}
	}
	user := make([]string, max(users, fresh))
	for i := range user {
		user[i] = "user:" + strconv.Itoa(i)
	}
	actor := func(i uint64) string {
		switch traffic {
		case "allowed":
			return user[i%fresh]
		case "denied":
			return attacker[i%attackers]
		}
		if i%20 == 0 { // 5%
			return user[(i/20)%users]
		}
		return attacker[i%attackers]
	}

	var allowed atomic.Int64
	cpu0, cmd0 := redisCPU(b, rdb, cmds)
	b.ReportAllocs()
	b.ResetTimer()
	if mode == "serial" {
		var i uint64
		for b.Loop() {
			if decide(ctx, actor(i)) {
				allowed.Add(1)
			}
			i++
		}
	} else {
		var next atomic.Uint64
		b.SetParallelism(8)
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if decide(ctx, actor(next.Add(1))) {
					allowed.Add(1)
				}
			}
		})
	}
	b.StopTimer()
	cpu1, cmd1 := redisCPU(b, rdb, cmds)
	n := float64(b.N)
	b.ReportMetric(n/b.Elapsed().Seconds(), "decisions/s")
	b.ReportMetric((cpu1-cpu0)/n, "redis-cpu-us/op")
	b.ReportMetric((cmd1-cmd0)/n, "redis-cmd-us/op")
	b.ReportMetric(float64(allowed.Load())/n, "allowed/op")
	// Check the traffic is what it says.
	a := float64(allowed.Load()) / n
	switch {
	case traffic == "allowed" && a != 1,
		traffic == "denied" && a != 0,
		traffic == "flood95" && (a < 0.04 || a > 0.06) && b.N > 1000:
		b.Fatalf("traffic=%s admitted %.3f of the calls", traffic, a)
	}
}

// newRateContender returns one call of impl (decide), a call that uses up an
// actor's quota (exhaust; nil for zset-pipeline), and the commands whose
// time is impl's (see redisCPU), for quota units per per, its keys under
// prefix.
func newRateContender(b *testing.B, rdb *redis.Client, impl, prefix string, quota int, per time.Duration) (decide decider, exhaust func(actor string), cmds []string) {
	ctx := context.Background()
	cmds = scriptCmds
	switch impl {
	case "zset-pipeline":
		cmds = zsetCmds
		var seq atomic.Uint64
		perUS := per.Microseconds()
		decide = func(ctx context.Context, actor string) bool {
			k := prefix + actor
			now := time.Now().UnixMicro()
			member := strconv.FormatUint(seq.Add(1), 36)
			pipe := rdb.Pipeline()
			pipe.ZRemRangeByScore(ctx, k, "-inf", strconv.FormatInt(now-perUS, 10))
			pipe.ZAdd(ctx, k, redis.Z{Score: float64(now), Member: member})
			card := pipe.ZCard(ctx, k)
			pipe.PExpire(ctx, k, per+time.Millisecond)
			if _, err := pipe.Exec(ctx); err != nil {
				b.Fatal(err)
			}
			return card.Val() <= int64(quota)
		}
	case "redis_rate":
		lim := redis_rate.NewLimiter(rdb)
		limit := redis_rate.Limit{Rate: quota, Burst: quota, Period: per}
		decide = func(ctx context.Context, actor string) bool {
			res, err := lim.Allow(ctx, prefix+actor, limit)
			if err != nil {
				b.Fatal(err)
			}
			return res.Allowed > 0
		}
		exhaust = func(actor string) {
			if _, err := lim.AllowN(ctx, prefix+actor, limit, quota); err != nil {
				b.Fatal(err)
			}
		}
	default:
		alg := ratelimit.SlidingLog
		if impl == "ratelimit-gcra" {
			alg = ratelimit.GCRA
		}
		l, err := ratelimit.New(&ratelimit.Options{
			Client:      rdb,
			Namespace:   prefix,
			ActorSecret: []byte("benchmark-secret-0123456789"),
			// The benchmark measures decisions Redis takes: on a loaded
			// machine a call can take longer than the default 100 ms.
			Timeout:       5 * time.Second,
			NoDenialCache: strings.HasSuffix(impl, "-nocache"),
			Policies: []ratelimit.Policy{{Name: "p", Algorithm: alg,
				Limits: []ratelimit.Limit{ratelimit.Per(quota, per)}}},
		})
		if err != nil {
			b.Fatal(err)
		}
		decide = func(ctx context.Context, actor string) bool {
			d, err := l.Allow(ctx, "p", actor)
			if err != nil {
				b.Fatal(err)
			}
			if d.Source.Fallback() {
				b.Fatalf("fallback: %v", d.Source)
			}
			return d.Allowed
		}
		exhaust = func(actor string) {
			if _, err := l.AllowN(ctx, "p", actor, quota); err != nil {
				b.Fatal(err)
			}
		}
	}
	return decide, exhaust, cmds
}

// The commands whose time redisCPU sums: a script's own commands are
// counted in its EVALSHA's time (and in their own lines too, so they are
// left out).
var (
	scriptCmds = []string{"evalsha", "eval"}
	zsetCmds   = []string{"zremrangebyscore", "zadd", "zcard", "pexpire"}
)

// redisCPU returns Redis's CPU time so far (user + system, µs) and the
// time the commands cmds took (µs, from commandstats).
func redisCPU(b *testing.B, rdb *redis.Client, cmds []string) (cpu, cmd float64) {
	b.Helper()
	info, err := rdb.Info(context.Background(), "cpu", "commandstats").Result()
	if err != nil {
		b.Fatal(err)
	}
	for _, line := range strings.Split(info, "\r\n") {
		k, v, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		switch {
		case k == "used_cpu_user" || k == "used_cpu_sys":
			f, _ := strconv.ParseFloat(v, 64)
			cpu += f * 1e6
		case strings.HasPrefix(k, "cmdstat_") && slices.Contains(cmds, k[len("cmdstat_"):]):
			for _, kv := range strings.Split(v, ",") {
				if us, ok := strings.CutPrefix(kv, "usec="); ok {
					f, _ := strconv.ParseFloat(us, 64)
					cmd += f
				}
			}
		}
	}
	return cpu, cmd
}

// BenchmarkRateLimitPaired measures the latency of an allowed decision of
// two contenders call by call, alternating (A then B, then B then A), on
// the same actors, so that both see the same load: on a machine shared
// with other work, the ratio of two separate runs swings by 2× while the
// ratio of paired medians holds. Each sub-benchmark names the contender
// (impl) and its base:
//
//   - impl=ratelimit-gcra,base=redis_rate: the same algorithm;
//   - impl=ratelimit-log,base=redis_rate: the exact log against GCRA;
//   - impl=ratelimit-log,base=zset-pipeline: the exact log against the
//     non-atomic sorted-set pipeline (its floor).
//
// Metrics: the median and 90th percentile of each side's calls (µs), and
// the ratio of the medians (ratio-p50). ns/op covers a pair of calls.
func BenchmarkRateLimitPaired(b *testing.B) {
	for _, pair := range [][2]string{
		{"ratelimit-gcra", "redis_rate"},
		{"ratelimit-log", "redis_rate"},
		{"ratelimit-log", "zset-pipeline"},
	} {
		b.Run(fmt.Sprintf("impl=%s,base=%s", pair[0], pair[1]), func(b *testing.B) {
			rdb := newRedis(b)
			ctx := context.Background()
			run := rlRun.Add(1)
			quota, per := ratelimit.MaxSlidingLogLimit, time.Second // never reached
			var decide [2]decider
			for i, impl := range pair {
				decide[i], _, _ = newRateContender(b, rdb, impl, fmt.Sprintf("rlpair-%s-%d-%d", runID, run, i), quota, per)
			}
			const actors = 1000
			actor := make([]string, actors)
			for i := range actor {
				actor[i] = "user:" + strconv.Itoa(i)
			}
			var took [2][]time.Duration
			call := func(j int, a string) {
				t0 := time.Now()
				if !decide[j](ctx, a) {
					b.Fatalf("%s denied a call with room", pair[j])
				}
				took[j] = append(took[j], time.Since(t0))
			}
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				a := actor[i%actors]
				first := i % 2
				call(first, a)
				call(1-first, a)
				i++
			}
			b.StopTimer()
			var p50 [2]float64
			for j := range took {
				slices.Sort(took[j])
				p50[j] = float64(took[j][len(took[j])/2]) / 1e3
				b.ReportMetric(p50[j], strings.ReplaceAll(pair[j], "-", "_")+"-p50-us")
				b.ReportMetric(float64(took[j][len(took[j])*9/10])/1e3, strings.ReplaceAll(pair[j], "-", "_")+"-p90-us")
			}
			b.ReportMetric(p50[0]/p50[1], "ratio-p50")
		})
	}
}
