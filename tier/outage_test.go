package tier_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tiercache/tiercache/internal/faultproxy"
	"github.com/tiercache/tiercache/internal/redistest"
	"github.com/tiercache/tiercache/tier"
)

// requireL2Err checks that err reports an L2 that could not be asked, and
// not an absent key.
func requireL2Err(t *testing.T, err error, msg string) {
	t.Helper()
	require.ErrorIs(t, err, tier.ErrL2, msg)
	require.NotErrorIs(t, err, tier.ErrNotFound, msg)
}

// TestCache_Get_L2UnreachableIsNotNotFound (finding 6): Get, which has no
// loader to fall back on, reports an L2 it could not ask (connection cut,
// breaker open, breaker still open after the network is back, epoch not
// known) as ErrL2, never as ErrNotFound; GetOrLoad still falls back to its
// loader.
func TestCache_Get_L2UnreachableIsNotNotFound(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	p := faultproxy.New(t, srv.Addr())
	rdb := l2Client(t, srv, p.Addr())
	o := tier.Options[string]{L2Timeout: 500 * time.Millisecond, BreakerFailures: 2, BreakerCooldown: time.Hour}
	c := over(t, rdb, o)
	ctx := t.Context()

	_, err := c.Get(ctx, "absent")
	require.ErrorIs(t, err, tier.ErrNotFound, "a key L2 does not have")
	require.NotErrorIs(t, err, tier.ErrL2)

	p.Cut()
	_, err = c.Get(ctx, "k:cut")
	requireL2Err(t, err, "connection cut")

	require.Eventually(t, func() bool {
		_, _ = c.Get(ctx, "k:cut")
		return c.Stats().Breaker == tier.BreakerOpen
	}, 10*time.Second, 10*time.Millisecond)
	_, err = c.Get(ctx, "k:open")
	requireL2Err(t, err, "breaker open")

	p.Heal()
	_, err = c.Get(ctx, "k:healed")
	requireL2Err(t, err, "breaker still open after the network is back")
	v, err := c.GetOrLoad(ctx, "k:load", func(context.Context, string) (string, error) { return "loaded", nil })
	require.NoError(t, err, "GetOrLoad falls back to the loader")
	require.Equal(t, "loaded", v)

	// A cache that starts while L2 is cut cannot name its keys (the epoch
	// is not read yet): Get says so.
	p.Cut()
	o.Namespace = "f-" + t.Name() + "-2"
	c2 := over(t, rdb, o)
	_, err = c2.Get(ctx, "k")
	requireL2Err(t, err, "epoch unknown")
	p.Heal()
	require.Eventually(t, func() bool {
		_, err := c2.Get(ctx, fmt.Sprintf("k:%d", time.Now().UnixNano()))
		return err != nil && !isL2Err(err)
	}, 10*time.Second, 10*time.Millisecond, "once the epoch is read, a missing key is ErrNotFound again")
	_, err = c2.Get(ctx, "k")
	require.ErrorIs(t, err, tier.ErrNotFound)
}

func isL2Err(err error) bool { return errors.Is(err, tier.ErrL2) }
