package benchmarks

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/alexedwards/scs/redisstore"
	"github.com/alexedwards/scs/v2"
	redigo "github.com/gomodule/redigo/redis"
	"github.com/redis/go-redis/v9"

	"github.com/tiercache/tiercache/session"
	"github.com/tiercache/tiercache/session/scsstore"
	"github.com/tiercache/tiercache/tier"
)

// sessionKeys is how many sessions the read benchmarks cycle through.
const sessionKeys = 1024

var sessionSecret = []byte("benchmark-secret-0123456789")

// sessionFields is what each benchmark session holds: a few small fields,
// as a booking application's session does.
func sessionFields(i int) map[string]string {
	return map[string]string{"role": "client", "lang": "fr", "tz": "Europe/Paris", "cart": strconv.Itoa(i), "csrf": strings.Repeat("x", 32)}
}

// sessionSink keeps results alive (written only on a branch never taken).
var sessionSink *session.Session

// BenchmarkSessionRead measures the read every request makes of its
// session, serial and parallel:
//
//   - impl=tier-l1-hit: a tier.Cache GetOrLoad hit of a warm key shaped
//     like a session's L1 key (the floor: what the session's L1 costs).
//   - impl=session: session.Manager.Get of a live token whose session is
//     in L1 (no round trip; no touch due, as with the default 3-minute
//     touch interval).
//   - impl=redis-hgetall: one HGETALL of the session's hash on the run's
//     Redis (what a session read costs without L1).
//   - impl=scs-redisstore: alexedwards/scs v2's SessionManager.Load with
//     its Redis store (redigo): one GET and a gob decode per request.
//   - impl=scs-scsstore: the same SessionManager.Load over
//     session/scsstore (a two-tier store): an L1 hit and scs's gob decode.
//
// Besides sec/op (wall time) it reports cpu-ns/op: the CPU time the whole
// process spent (user + system, all threads: the benchmark's goroutines,
// the runtime, the cache's own) divided by the reads. On a machine shared
// with other work, sec/op swings with the share of the cores the process
// is given; cpu-ns/op does not, so the ratio of two in-memory contenders
// is read from it. It leaves out redis-server's CPU: for the Redis
// contenders read sec/op.
func BenchmarkSessionRead(b *testing.B) {
	for _, mode := range []string{"serial", "parallel"} {
		for _, impl := range []string{"tier-l1-hit", "session", "redis-hgetall", "scs-redisstore", "scs-scsstore"} {
			b.Run("mode="+mode+"/impl="+impl, func(b *testing.B) { benchSessionRead(b, mode, impl) })
		}
	}
}

func benchSessionRead(b *testing.B, mode, impl string) {
	ctx := context.Background()
	var read func(i int) bool
	switch impl {
	case "tier-l1-hit":
		c := tier.Must(&tier.Options[*session.Session]{Name: "bench", Jitter: tier.NoJitter, TTL: time.Hour})
		b.Cleanup(func() { _ = c.Close() })
		keys := make([]string, sessionKeys)
		v := &session.Session{}
		load := func(context.Context, string) (*session.Session, error) { return v, nil }
		for i := range keys {
			keys[i] = fmt.Sprintf("AAAAAAAAAAAAAAAA:%022d", i)
			if _, err := c.GetOrLoad(ctx, keys[i], load); err != nil {
				b.Fatal(err)
			}
		}
		read = func(i int) bool {
			s, err := c.GetOrLoad(ctx, keys[i%sessionKeys], load)
			return err == nil && s != nil
		}
	case "session":
		// Timeout: a read that leaves L1 (a write ristretto dropped) must
		// not fail the run because a loaded machine took over 200 ms.
		m := session.Must(&session.Options{Client: newRedis(b), Secret: sessionSecret, Namespace: namespace("sess"), L1TTL: time.Hour, Timeout: 5 * time.Second})
		b.Cleanup(func() { _ = m.Close() })
		toks := sessionTokens(b, m)
		for _, t := range toks {
			if _, err := m.Get(ctx, t); err != nil {
				b.Fatal(err)
			}
		}
		read = func(i int) bool {
			s, err := m.Get(ctx, toks[i%sessionKeys])
			if err != nil {
				b.Fatal(err)
			}
			if s == nil {
				sessionSink = s
			}
			return true
		}
		defer func() {
			// A few L1 writes are dropped by ristretto's buffers (those
			// reads go to Redis once more); more than that is a bug.
			if st := m.Stats(); st.Touches > 0 || st.Loads > 2*sessionKeys+st.L1Reads/1000 {
				b.Errorf("reads left L1: %+v", st)
			}
		}()
	case "redis-hgetall":
		rdb := newRedis(b)
		m := session.Must(&session.Options{Client: rdb, Secret: sessionSecret, Namespace: namespace("sessraw")})
		b.Cleanup(func() { _ = m.Close() })
		toks := sessionTokens(b, m)
		keys := make([]string, len(toks))
		for i, t := range toks {
			keys[i] = namespace("sessraw") + ":{u:" + t[:16] + "}:s:" + m.Ref(t)
		}
		read = func(i int) bool {
			kv, err := rdb.HGetAll(ctx, keys[i%sessionKeys]).Result()
			if err != nil || len(kv) == 0 {
				b.Fatal(err, len(kv))
			}
			return true
		}
	case "scs-redisstore", "scs-scsstore":
		sm, toks := scsSessions(b, 0, impl == "scs-scsstore")
		read = func(i int) bool {
			c, err := sm.Load(ctx, toks[i%sessionKeys])
			if err != nil || sm.GetString(c, "role") != "client" {
				b.Fatal(err)
			}
			return true
		}
	}
	b.ReportAllocs()
	b.ResetTimer() // b.Loop resets it too; RunParallel does not
	start := time.Now()
	cpu0, cpuOK := processCPU()
	if mode == "serial" {
		i := 0
		for b.Loop() {
			read(i)
			i++
		}
	} else {
		var o offsets
		b.RunParallel(func(pb *testing.PB) {
			i := int(o.next())
			for pb.Next() {
				read(i)
				i++
			}
		})
	}
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "reads/s")
	if cpu1, ok := processCPU(); ok && cpuOK {
		b.ReportMetric(float64(cpu1-cpu0)/float64(b.N), "cpu-ns/op")
	}
}

// sessionTokens creates sessionKeys sessions (one user each) and returns
// their tokens.
func sessionTokens(b *testing.B, m *session.Manager) []string {
	b.Helper()
	toks := make([]string, sessionKeys)
	for i := range toks {
		t, err := m.Create(context.Background(), "user:"+strconv.Itoa(i), session.Client{Device: "bench"}, sessionFields(i))
		if err != nil {
			b.Fatal(err)
		}
		toks[i] = t
	}
	return toks
}

// scsSessions returns an scs SessionManager over the run's Redis with
// sessionKeys committed sessions: with scs's redisstore (on redigo), or
// with session/scsstore if tiered.
func scsSessions(b *testing.B, idle time.Duration, tiered bool) (*scs.SessionManager, []string) {
	b.Helper()
	sm := scs.New()
	if tiered {
		st := scsstore.Must(&scsstore.Options{Client: newRedis(b), Secret: sessionSecret, Namespace: namespace("scst"), L1TTL: time.Hour})
		b.Cleanup(func() { _ = st.Close() })
		sm.Store = st
	} else {
		addr := redisAddr(b)
		pool := &redigo.Pool{MaxIdle: 64, Dial: func() (redigo.Conn, error) { return redigo.Dial("tcp", addr) }}
		b.Cleanup(func() { _ = pool.Close() })
		sm.Store = redisstore.NewWithPrefix(pool, namespace("scs")+":")
	}
	sm.Lifetime = keyTTL
	sm.IdleTimeout = idle
	toks := make([]string, sessionKeys)
	for i := range toks {
		ctx, err := sm.Load(context.Background(), "")
		if err != nil {
			b.Fatal(err)
		}
		for k, v := range sessionFields(i) {
			sm.Put(ctx, k, v)
		}
		if toks[i], _, err = sm.Commit(ctx); err != nil {
			b.Fatal(err)
		}
	}
	return sm, toks
}

// BenchmarkSessionWrites counts the Redis writes that 1,000 requests of
// one session make with an idle timeout, through each store's HTTP
// middleware, from the server's own command counts (INFO commandstats on a
// private redis-server). The time scale is compressed a thousandfold: one
// request a millisecond with an idle timeout of 1.8 s stands for one
// request a second with the default 30 minutes (the touch interval, a
// tenth of it, scales with it).
//
//   - impl=session: session.HTTP's handler; last-seen is written once per
//     touch interval, by whichever request finds it due.
//   - impl=scs: scs's LoadAndSave; with an IdleTimeout every request
//     commits the whole session (scs #32, #251).
//
// Metric: redis-writes/1000req (writing commands: SET, HSET, PEXPIREAT,
// ...), and redis-calls/1000req (every command, reads included; for
// session, the script calls as one each).
func BenchmarkSessionWrites(b *testing.B) {
	for _, impl := range []string{"session", "scs"} {
		b.Run("impl="+impl, func(b *testing.B) { benchSessionWrites(b, impl) })
	}
}

func benchSessionWrites(b *testing.B, impl string) {
	const requests = 1000
	const idle = 1800 * time.Millisecond
	rdb := newRedis(b)
	var h http.Handler
	var cookie *http.Cookie
	ok := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {})
	switch impl {
	case "session":
		m := session.Must(&session.Options{Client: rdb, Secret: sessionSecret, Namespace: namespace("sessw"), IdleTimeout: idle})
		b.Cleanup(func() { _ = m.Close() })
		hh := session.NewHTTP(m, nil)
		tok, err := m.Create(context.Background(), "user:1", session.Client{}, sessionFields(1))
		if err != nil {
			b.Fatal(err)
		}
		h, cookie = hh.Handler(ok), &http.Cookie{Name: session.DefaultCookieName, Value: tok}
	case "scs":
		sm, toks := scsSessions(b, idle, false)
		h, cookie = sm.LoadAndSave(ok), &http.Cookie{Name: sm.Cookie.Name, Value: toks[0]}
	}
	var writes, calls float64
	for b.Loop() {
		w0, c0 := redisWrites(b, rdb)
		start := time.Now()
		for i := range requests {
			if d := time.Until(start.Add(time.Duration(i) * time.Millisecond)); d > 0 {
				time.Sleep(d) // one request a millisecond
			}
			r := httptest.NewRequest("GET", "/", nil)
			r.AddCookie(cookie)
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, r)
			if rec.Code != http.StatusOK {
				b.Fatalf("request %d: %d", i, rec.Code)
			}
		}
		w1, c1 := redisWrites(b, rdb)
		writes += w1 - w0
		calls += c1 - c0
	}
	b.ReportMetric(writes/float64(b.N), "redis-writes/1000req")
	b.ReportMetric(calls/float64(b.N), "redis-calls/1000req")
}

// redisWrites returns the number of writing commands (inside scripts
// too) and of round-trip commands (a script counts once; the two stores
// use only EVALSHA, GET and SET) the server ran so far.
func redisWrites(b *testing.B, rdb *redis.Client) (writes, calls float64) {
	b.Helper()
	info, err := rdb.Info(context.Background(), "commandstats").Result()
	if err != nil {
		b.Fatal(err)
	}
	for _, line := range strings.Split(info, "\r\n") {
		k, v, ok := strings.Cut(line, ":")
		if !ok || !strings.HasPrefix(k, "cmdstat_") {
			continue
		}
		f, _ := strconv.ParseFloat(strings.TrimPrefix(strings.SplitN(v, ",", 2)[0], "calls="), 64)
		switch strings.TrimPrefix(k, "cmdstat_") {
		case "hset", "hdel", "del", "unlink", "pexpire", "pexpireat", "expire", "rename", "hincrby":
			writes += f
		case "set", "setex", "psetex":
			writes += f
			calls += f
		case "evalsha", "eval", "get":
			calls += f
		}
	}
	return writes, calls
}
