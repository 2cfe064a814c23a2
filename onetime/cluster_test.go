package onetime_test

import (
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tiercache/tiercache/internal/redistest"
	"github.com/tiercache/tiercache/onetime"
)

// TestCluster runs tokens, codes, OAuth and temp data on a Redis Cluster.
func TestCluster(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a 6-node cluster; run without -short")
	}
	t.Parallel()
	c := redistest.StartCluster(t, nil)
	rdb := c.Client(t)
	ctx := t.Context()
	s, err := onetime.New(ctx, &onetime.Options{Client: rdb, Secret: secret, Timeout: 10 * time.Second})
	require.NoError(t, err)

	var toks []string
	for i := range 30 {
		tok, err := s.Mint(ctx, "verify", fmt.Sprint("u", i), time.Minute, []byte("x"))
		require.NoError(t, err)
		toks = append(toks, tok)
	}
	var ok atomic.Int32
	var wg sync.WaitGroup
	for i, tok := range toks {
		for range 10 {
			wg.Go(func() {
				_, err := s.Consume(ctx, "verify", tok, fmt.Sprint("u", i))
				if err == nil {
					ok.Add(1)
				} else if !errors.Is(err, onetime.ErrExpiredOrUsed) {
					t.Error(err)
				}
			})
		}
	}
	wg.Wait()
	require.Equal(t, int32(len(toks)), ok.Load(), "one success per token")

	code, err := s.MintCode(ctx, "sms", "bob", time.Minute)
	require.NoError(t, err)
	require.ErrorIs(t, s.ConsumeCode(ctx, "sms", "bob", "x"), onetime.ErrWrongCode)
	require.NoError(t, s.ConsumeCode(ctx, "sms", "bob", code))

	flow, err := s.BeginOAuth(ctx, "google", "pre", 0)
	require.NoError(t, err)
	v, err := s.FinishOAuth(ctx, "google", "pre", flow.State)
	require.NoError(t, err)
	require.Equal(t, flow.Challenge, onetime.S256Challenge(v))

	d, err := onetime.NewTempData[wizard](&onetime.TempDataOptions{Client: rdb, Name: "w"})
	require.NoError(t, err)
	_, err = d.Update(ctx, "s", func(w wizard, _ bool) (wizard, error) { w.Step = 3; return w, nil })
	require.NoError(t, err)
	w, err := d.Get(ctx, "s")
	require.NoError(t, err)
	require.Equal(t, 3, w.Step)
}
