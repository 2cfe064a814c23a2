package onetime_test

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/tiercache/tiercache/onetime"
)

// TestS256Challenge uses the example of RFC 7636, appendix B.
func TestS256Challenge(t *testing.T) {
	t.Parallel()
	require.Equal(t, "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM",
		onetime.S256Challenge("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"))
	v := onetime.NewVerifier()
	require.Len(t, v, 43)
	require.Regexp(t, `^[A-Za-z0-9_-]{43}$`, v)
	require.NotEqual(t, v, onetime.NewVerifier())
}

func TestStore_OAuth(t *testing.T) {
	t.Parallel()
	s, _, _, _ := newStore(t, nil)
	ctx := t.Context()
	flow, err := s.BeginOAuth(ctx, "google", "pre-login-1", 0)
	require.NoError(t, err)
	require.Equal(t, "S256", flow.ChallengeMethod)

	_, err = s.FinishOAuth(ctx, "github", "pre-login-1", flow.State)
	require.ErrorIs(t, err, onetime.ErrExpiredOrUsed, "a state is only good at its provider")
	v, err := s.FinishOAuth(ctx, "google", "pre-login-1", flow.State)
	require.NoError(t, err)
	require.Equal(t, flow.Challenge, onetime.S256Challenge(v), "the verifier matches the challenge")
	_, err = s.FinishOAuth(ctx, "google", "pre-login-1", flow.State)
	require.ErrorIs(t, err, onetime.ErrExpiredOrUsed, "a callback replayed")

	// Login CSRF: the attacker's state arrives in the victim's session.
	flow, err = s.BeginOAuth(ctx, "google", "attacker-session", 0)
	require.NoError(t, err)
	_, err = s.FinishOAuth(ctx, "google", "victim-session", flow.State)
	require.ErrorIs(t, err, onetime.ErrWrongSubject)
}
