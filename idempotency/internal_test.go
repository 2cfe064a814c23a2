package idempotency

import (
	"net/http"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/tiercache/tiercache/internal/redistest"
)

// TestBeginScript_Resent: go-redis resends a command whose reply was lost;
// the owner token makes the begin script give the same attempt back
// instead of answering "in flight" to its own request. The same holds for
// a takeover.
func TestBeginScript_Resent(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	s, err := New(t.Context(), &Options{Client: srv.Client(t), NoL1: true})
	require.NoError(t, err)
	t.Cleanup(func() { _ = s.Close() })
	ctx := t.Context()
	id := s.recordID("", "resent")
	fp := fingerprintHex(nil)
	first, err := s.run(ctx, beginScript, id.key, fp, "owner-1", 10000, 60000, 0)
	require.NoError(t, err)
	again, err := s.run(ctx, beginScript, id.key, fp, "owner-1", 10000, 60000, 0)
	require.NoError(t, err)
	r1, _ := parseBegin(first)
	r2, _ := parseBegin(again)
	require.Equal(t, "acquired", r2.outcome)
	require.Equal(t, r1.fence, r2.fence)

	other, err := s.run(ctx, beginScript, id.key, fp, "owner-2", 10000, 60000, 0)
	require.NoError(t, err)
	r3, _ := parseBegin(other)
	require.Equal(t, "inflight", r3.outcome)

	tk, err := s.run(ctx, beginScript, id.key, fp, "owner-2", 10000, 60000, 20000)
	require.NoError(t, err)
	tk2, err := s.run(ctx, beginScript, id.key, fp, "owner-2", 10000, 60000, 20000)
	require.NoError(t, err)
	r4, _ := parseBegin(tk)
	r5, _ := parseBegin(tk2)
	require.Equal(t, "takeover", r4.outcome)
	require.Equal(t, "takeover", r5.outcome)
	require.Equal(t, r4.fence, r5.fence)
	require.Greater(t, r4.fence, r1.fence)
}

func FuzzKeyFromHeader(f *testing.F) {
	for _, s := range []string{`"8e03978e-40d5-43e8-bc93-6894a57f9324"`, "bare", `""`, `"a\"b"`, `"a\\b"`, `"\x01"`, `"unterminated`, "é", strings.Repeat("k", 300)} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, v string) {
		r, _ := http.NewRequest("POST", "/", nil)
		r.Header.Set(HeaderKey, v)
		key, ok, err := KeyFromHeader(r)
		if !ok {
			t.Fatalf("a present field reported absent")
		}
		if err == nil {
			if checkKey(key) != nil {
				t.Fatalf("accepted an invalid key %q", key)
			}
		}
	})
}
