package goredis_test

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/tiercache/tiercache/backends/goredis"
	"github.com/tiercache/tiercache/internal/redistest"
	"github.com/tiercache/tiercache/tier"
)

// Lease, with and without replace, against what a key can hold: nothing, a
// value, another instance's lease (live, or one that cannot be: no TTL, or
// far more left than a lease is given), a value over the limit, another
// type. Without replace it sends SET NX and GETRANGE in one round trip, and
// a second round trip (PTTL and GETRANGE of the marker) only when it found
// another instance's marker.
func TestBackend_Lease(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	rdb := srv.Client(t)
	sent := &sentCommands{}
	leaser := srv.Client(t)
	leaser.AddHook(sent)
	be := goredis.Must(leaser, &goredis.Options{MaxValueBytes: 64})
	ctx := context.Background()
	const (
		ours   = tier.LeasePrefix + "ours"
		theirs = tier.LeasePrefix + "theirs"
	)
	tests := []struct {
		name    string
		setup   func(key string)
		replace bool
		want    string // what Lease returns ("" for nil: the lease is ours)
		wantErr error
		holds   string // what the key holds afterwards
		noTTL   bool   // the key has no TTL (left as planted)
	}{
		{name: "absent", setup: func(string) {}, holds: ours},
		{name: "absent, replace", setup: func(string) {}, replace: true, holds: ours},
		{name: "value", setup: func(k string) { rdb.Set(ctx, k, "v", time.Minute) }, want: "v", holds: "v"},
		{name: "value, replace", setup: func(k string) { rdb.Set(ctx, k, "v", time.Minute) }, replace: true, holds: ours + "\nv"},
		{name: "their lease", setup: func(k string) { rdb.Set(ctx, k, theirs, time.Minute) }, want: theirs, holds: theirs},
		{name: "their lease, replace", setup: func(k string) { rdb.Set(ctx, k, theirs, time.Minute) }, replace: true, want: theirs, holds: theirs},
		{name: "their lease keeping a value of the limit", setup: func(k string) { rdb.Set(ctx, k, theirs+"\n"+strings.Repeat("x", 64), time.Minute) }, want: theirs + "\n" + strings.Repeat("x", 64), holds: theirs + "\n" + strings.Repeat("x", 64)},
		{name: "their lease keeping a value of the limit, replace", setup: func(k string) { rdb.Set(ctx, k, theirs+"\n"+strings.Repeat("x", 64), time.Minute) }, replace: true, want: theirs + "\n" + strings.Repeat("x", 64), holds: theirs + "\n" + strings.Repeat("x", 64)},
		{name: "their lease with a TTL of the lease's", setup: func(k string) { rdb.Set(ctx, k, theirs, 2*time.Minute) }, want: theirs, holds: theirs},
		{name: "their lease without a TTL", setup: func(k string) { rdb.Set(ctx, k, theirs, 0) }, wantErr: tier.ErrCorrupt, holds: theirs, noTTL: true},
		{name: "their lease without a TTL, replace", setup: func(k string) { rdb.Set(ctx, k, theirs, 0) }, replace: true, wantErr: tier.ErrCorrupt, holds: theirs, noTTL: true},
		{name: "their lease with a TTL of a day", setup: func(k string) { rdb.Set(ctx, k, theirs, 24*time.Hour) }, wantErr: tier.ErrCorrupt, holds: theirs},
		{name: "their lease keeping a value, without a TTL", setup: func(k string) { rdb.Set(ctx, k, theirs+"\nv", 0) }, wantErr: tier.ErrCorrupt, holds: theirs + "\nv", noTTL: true},
		{name: "their lease with a TTL of a day, replace", setup: func(k string) { rdb.Set(ctx, k, theirs, 24*time.Hour) }, replace: true, wantErr: tier.ErrCorrupt, holds: theirs},
		{name: "too large", setup: func(k string) { rdb.Set(ctx, k, strings.Repeat("x", 100), time.Minute) }, wantErr: tier.ErrValueTooLarge, holds: strings.Repeat("x", 100)},
		{name: "another type", setup: func(k string) { rdb.LPush(ctx, k, "x") }, wantErr: tier.ErrCorrupt},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			key := "lease-test:" + tt.name
			t.Cleanup(func() { rdb.Del(ctx, key) })
			tt.setup(key)
			sent.reset()
			got, err := be.Lease(ctx, key, ours, time.Minute, tt.replace)
			if !tt.replace {
				want := [][]string{{"set", "getrange"}}
				if strings.HasPrefix(tt.name, "their lease") {
					want = append(want, []string{"pttl", "getrange"})
				}
				require.Equal(t, want, sent.trips(), "round trips and their commands")
			}
			if tt.wantErr != nil {
				require.ErrorIs(t, err, tt.wantErr)
			} else {
				require.NoError(t, err)
				require.Equal(t, tt.want, string(got))
			}
			if tt.holds != "" {
				require.Equal(t, tt.holds, rdb.Get(ctx, key).Val())
				if tt.noTTL {
					require.Equal(t, time.Duration(-1), rdb.PTTL(ctx, key).Val(), "Lease changes nothing: the cache deletes bad bytes")
				} else {
					require.Greater(t, rdb.PTTL(ctx, key).Val(), time.Duration(0), "the key keeps a TTL")
				}
			}
		})
	}
}

// LeaseMany sends leased writes in the lease's round trip, and
// SetLeasedMany and SetLeased send them alone: each write lands, with its
// own TTL, only where its marker still is, each outcome is reported, no side
// key is left behind, and a server that forgot the scripts (SCRIPT FLUSH, as
// after a failover to a fresh replica) still gets them.
func TestBackend_CarriedWrites(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	rdb := srv.Client(t)
	be := goredis.Must(rdb, &goredis.Options{MaxValueBytes: 64})
	ctx := context.Background()
	const ours, theirs = tier.LeasePrefix + "ours", tier.LeasePrefix + "theirs"
	const ttl = 10 * time.Minute // the markers have one minute
	for _, flush := range []bool{false, true} {
		for _, how := range []string{"carried", "many", "one"} {
			pfx := fmt.Sprintf("carry:%v:%v:", flush, how)
			require.NoError(t, rdb.Set(ctx, pfx+"held", ours, time.Minute).Err())
			require.NoError(t, rdb.Set(ctx, pfx+"kept", ours+"\nold", time.Minute).Err())
			require.NoError(t, rdb.Set(ctx, pfx+"taken", theirs, time.Minute).Err())
			if flush {
				require.NoError(t, rdb.ScriptFlush(ctx).Err())
			}
			writes := []tier.LeasedWrite{
				{Key: pfx + "held", Lease: ours, Value: []byte("v1"), TTL: ttl},
				{Key: pfx + "kept", Lease: ours, Value: []byte("v2"), TTL: ttl},
				{Key: pfx + "taken", Lease: ours, Value: []byte("v3"), TTL: ttl},
				{Key: pfx + "gone", Lease: ours, Value: []byte("v4"), TTL: ttl},
			}
			keys := []string{pfx + "held", pfx + "kept", pfx + "taken"}
			switch how {
			case "carried":
				leases := []tier.LeaseRequest{{Key: pfx + "lease", Lease: ours, TTL: time.Minute}}
				be.LeaseMany(ctx, leases, writes)
				require.NoError(t, leases[0].Err)
				require.Nil(t, leases[0].Cur, "the lease is taken")
				require.Equal(t, ours, rdb.Get(ctx, pfx+"lease").Val())
				keys = append(keys, pfx+"lease")
			case "many":
				be.SetLeasedMany(ctx, writes)
			case "one":
				for i, w := range writes {
					writes[i].Written, writes[i].Err = be.SetLeased(ctx, w.Key, w.Lease, w.Value, w.TTL)
				}
			}
			for i, want := range []bool{true, true, false, false} {
				require.NoError(t, writes[i].Err, writes[i].Key)
				require.Equal(t, want, writes[i].Written, writes[i].Key)
			}
			require.Equal(t, "v1", rdb.Get(ctx, pfx+"held").Val())
			require.Equal(t, "v2", rdb.Get(ctx, pfx+"kept").Val())
			require.Equal(t, theirs, rdb.Get(ctx, pfx+"taken").Val())
			require.Zero(t, rdb.Exists(ctx, pfx+"gone").Val())
			for _, k := range []string{pfx + "held", pfx + "kept"} {
				require.Greater(t, rdb.PTTL(ctx, k).Val(), time.Minute, "%s has the write's TTL, not the marker's", k)
			}
			require.ElementsMatch(t, keys, rdb.Keys(ctx, pfx+"*").Val(), "no side key is left")
		}
	}

	// A failed round trip fails the lease and every write it carried.
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	writes := []tier.LeasedWrite{{Key: "carry:x", Lease: ours, Value: []byte("v"), TTL: time.Minute}}
	leases := []tier.LeaseRequest{{Key: "carry:lease2", Lease: ours, TTL: time.Minute}}
	be.LeaseMany(cctx, leases, writes)
	require.ErrorIs(t, leases[0].Err, context.Canceled)
	require.ErrorIs(t, writes[0].Err, context.Canceled)
	require.False(t, writes[0].Written)
}

// A marker that Lease found, and that its holder replaced with its value
// before Lease read the marker's TTL, is not taken for a dead lease (which
// the cache would delete), even when the value's TTL is one no lease has:
// Lease answers with the marker (the cache then waits for the value) and
// the value stays.
func TestBackend_LeaseMarkerReplacedBeforeItsTTLIsRead(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	rdb := srv.Client(t)
	ctx := context.Background()
	const theirs = tier.LeasePrefix + "theirs"
	key := "lease-test:replaced"
	require.NoError(t, rdb.Set(ctx, key, theirs, time.Minute).Err())
	leaser := srv.Client(t)
	leaser.AddHook(&sentCommands{before: func(names []string) {
		if slices.Equal(names, []string{"pttl", "getrange"}) { // between Lease's two round trips
			require.NoError(t, rdb.Set(ctx, key, "their value", 24*time.Hour).Err())
		}
	}})
	be := goredis.Must(leaser, nil)
	got, err := be.Lease(ctx, key, tier.LeasePrefix+"ours", time.Minute, false)
	require.NoError(t, err)
	require.Equal(t, theirs, string(got))
	require.Equal(t, "their value", rdb.Get(ctx, key).Val())
}

// LeaseMany of a batch whose keys hold nothing, a value, and other
// instances' markers (live, without a TTL, keeping a value): one round
// trip, and a second that reads the TTL of the three markers only; each
// lease gets its own outcome.
func TestBackend_LeaseManyMarkers(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	rdb := srv.Client(t)
	ctx := context.Background()
	const ours, theirs = tier.LeasePrefix + "ours", tier.LeasePrefix + "theirs"
	keys := []string{"many:absent", "many:live", "many:value", "many:dead", "many:kept", "many:absent2"}
	require.NoError(t, rdb.Set(ctx, "many:live", theirs, time.Minute).Err())
	require.NoError(t, rdb.Set(ctx, "many:value", "v", time.Minute).Err())
	require.NoError(t, rdb.Set(ctx, "many:dead", theirs, 0).Err())
	require.NoError(t, rdb.Set(ctx, "many:kept", theirs+"\nold", time.Minute).Err())
	sent := &sentCommands{}
	leaser := srv.Client(t)
	leaser.AddHook(sent)
	be := goredis.Must(leaser, nil)
	leases := make([]tier.LeaseRequest, len(keys))
	for i, k := range keys {
		leases[i] = tier.LeaseRequest{Key: k, Lease: ours, TTL: time.Minute}
	}
	be.LeaseMany(ctx, leases, nil)
	want := []struct {
		cur string
		err error
	}{{"", nil}, {theirs, nil}, {"v", nil}, {"", tier.ErrCorrupt}, {theirs + "\nold", nil}, {"", nil}}
	for i, w := range want {
		if w.err != nil {
			require.ErrorIs(t, leases[i].Err, w.err, keys[i])
			continue
		}
		require.NoError(t, leases[i].Err, keys[i])
		require.Equal(t, w.cur, string(leases[i].Cur), keys[i])
	}
	require.Equal(t, [][]string{
		{"set", "getrange", "set", "getrange", "set", "getrange", "set", "getrange", "set", "getrange", "set", "getrange"},
		{"pttl", "getrange", "pttl", "getrange", "pttl", "getrange"},
	}, sent.trips())
	require.Equal(t, ours, rdb.Get(ctx, "many:absent").Val())
	require.Equal(t, ours, rdb.Get(ctx, "many:absent2").Val())
}

// A lease whose context ends before the marker's TTL is read takes the
// marker for a live one (the cache waits for the value): it does not fail.
func TestBackend_LeaseMarkerTTLUnreadIsLive(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	rdb := srv.Client(t)
	const theirs = tier.LeasePrefix + "theirs"
	key := "lease-test:unread"
	require.NoError(t, rdb.Set(context.Background(), key, theirs, 0).Err()) // dead, were its TTL read
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	leaser := srv.Client(t)
	leaser.AddHook(&sentCommands{before: func(names []string) {
		if slices.Equal(names, []string{"pttl", "getrange"}) {
			cancel()
		}
	}})
	got, err := goredis.Must(leaser, nil).Lease(ctx, key, tier.LeasePrefix+"ours", time.Minute, false)
	require.NoError(t, err)
	require.Equal(t, theirs, string(got))
}

// sentCommands is a go-redis hook that records the names of the commands
// of each round trip (a command alone or a pipeline), but a connection's
// handshake.
type sentCommands struct {
	before func(names []string) // if set, called before each round trip is sent

	mu   sync.Mutex
	sent [][]string
}

func (h *sentCommands) reset() {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.sent = nil
}

func (h *sentCommands) trips() [][]string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return slices.Clone(h.sent)
}

// record keeps the names of cmds, unless they set up a new connection.
func (h *sentCommands) record(cmds []redis.Cmder) {
	names := make([]string, len(cmds))
	for i, c := range cmds {
		switch names[i] = c.Name(); names[i] {
		case "hello", "client", "auth", "select":
			return
		}
	}
	if h.before != nil {
		h.before(names)
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	h.sent = append(h.sent, names)
}

func (h *sentCommands) DialHook(next redis.DialHook) redis.DialHook { return next }

func (h *sentCommands) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		h.record([]redis.Cmder{cmd})
		return next(ctx, cmd)
	}
}

func (h *sentCommands) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		h.record(cmds)
		return next(ctx, cmds)
	}
}
