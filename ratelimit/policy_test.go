package ratelimit_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tiercache/tiercache/ratelimit"
)

func TestNew_invalid(t *testing.T) {
	t.Parallel()
	ok := ratelimit.Policy{Name: "ok", Algorithm: ratelimit.SlidingLog, Limits: []ratelimit.Limit{ratelimit.Per(1, time.Second)}}
	with := func(f func(p *ratelimit.Policy)) []ratelimit.Policy {
		p := ok
		p.Limits = append([]ratelimit.Limit(nil), ok.Limits...)
		f(&p)
		return []ratelimit.Policy{p}
	}
	tests := []struct {
		name     string
		opts     ratelimit.Options
		sentinel error
	}{
		{"no policies", ratelimit.Options{ActorSecret: secret}, ratelimit.ErrInvalidOptions},
		{"short secret", ratelimit.Options{ActorSecret: []byte("short"), Policies: []ratelimit.Policy{ok}}, ratelimit.ErrInvalidOptions},
		{"namespace with a brace", ratelimit.Options{ActorSecret: secret, Namespace: "a{b", Policies: []ratelimit.Policy{ok}}, ratelimit.ErrInvalidOptions},
		{"negative timeout", ratelimit.Options{ActorSecret: secret, Timeout: -1, Policies: []ratelimit.Policy{ok}}, ratelimit.ErrInvalidOptions},
		{"bad name", ratelimit.Options{ActorSecret: secret, Policies: with(func(p *ratelimit.Policy) { p.Name = "a b" })}, ratelimit.ErrInvalidPolicy},
		{"no algorithm", ratelimit.Options{ActorSecret: secret, Policies: with(func(p *ratelimit.Policy) { p.Algorithm = 0 })}, ratelimit.ErrInvalidPolicy},
		{"no limits", ratelimit.Options{ActorSecret: secret, Policies: with(func(p *ratelimit.Policy) { p.Limits = nil })}, ratelimit.ErrInvalidPolicy},
		{"zero N", ratelimit.Options{ActorSecret: secret, Policies: with(func(p *ratelimit.Policy) { p.Limits[0].N = 0 })}, ratelimit.ErrInvalidPolicy},
		{"short window", ratelimit.Options{ActorSecret: secret, Policies: with(func(p *ratelimit.Policy) { p.Limits[0].Per = time.Microsecond })}, ratelimit.ErrInvalidPolicy},
		{"log too large", ratelimit.Options{ActorSecret: secret, Policies: with(func(p *ratelimit.Policy) { p.Limits[0].N = ratelimit.MaxSlidingLogLimit + 1 })}, ratelimit.ErrInvalidPolicy},
		{"burst outside GCRA", ratelimit.Options{ActorSecret: secret, Policies: with(func(p *ratelimit.Policy) { p.Limits[0].Burst = 2 })}, ratelimit.ErrInvalidPolicy},
		{"share over 1", ratelimit.Options{ActorSecret: secret, Policies: with(func(p *ratelimit.Policy) { p.LocalShare = 1.5 })}, ratelimit.ErrInvalidPolicy},
		{"unknown include", ratelimit.Options{ActorSecret: secret, Policies: with(func(p *ratelimit.Policy) { p.Include = []string{"nope"} })}, ratelimit.ErrInvalidPolicy},
		{"self include", ratelimit.Options{ActorSecret: secret, Policies: with(func(p *ratelimit.Policy) { p.Include = []string{"ok"} })}, ratelimit.ErrInvalidPolicy},
		{"duplicate window names", ratelimit.Options{ActorSecret: secret, Policies: with(func(p *ratelimit.Policy) {
			p.Limits = []ratelimit.Limit{ratelimit.Per(1, time.Second), ratelimit.Per(2, time.Second)}
		})}, ratelimit.ErrInvalidPolicy},
		{"duplicate policies", ratelimit.Options{ActorSecret: secret, Policies: []ratelimit.Policy{ok, ok}}, ratelimit.ErrInvalidPolicy},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := ratelimit.New(&tt.opts)
			require.ErrorIs(t, err, tt.sentinel)
		})
	}
	require.Panics(t, func() { ratelimit.Must(nil) })
}

func TestLimiter_Quotas(t *testing.T) {
	t.Parallel()
	all := ratelimit.Policy{Name: "all", Algorithm: ratelimit.SlidingWindow, Limits: []ratelimit.Limit{ratelimit.Per(100, 10*time.Minute)}}
	p := ratelimit.Policy{Name: "p", Algorithm: ratelimit.SlidingLog, Include: []string{"all"}, Outage: ratelimit.FailClosed,
		Limits: []ratelimit.Limit{ratelimit.Per(5, time.Hour), ratelimit.Per(10, 250*time.Millisecond)}}
	l := newLimiter(t, nil, nil, all, p)
	ws, err := l.Quotas("p")
	require.NoError(t, err)
	var names []string
	for _, w := range ws {
		names = append(names, w.Name)
	}
	require.Equal(t, []string{"p-3600s", "p-250ms", "all"}, names)
	mode, err := l.Outage("p")
	require.NoError(t, err)
	require.Equal(t, ratelimit.FailClosed, mode)
	mode, err = l.Outage("all")
	require.NoError(t, err)
	require.Equal(t, ratelimit.Local, mode)
}
