package onetime

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"time"
)

// DefaultOAuthTTL bounds a login at the provider: long enough for a user
// who has to type a password and a second factor.
const DefaultOAuthTTL = 10 * time.Minute

// OAuthFlow is what to send the user to the provider with: the state and
// the PKCE challenge (RFC 7636, S256). The verifier stays sealed in Redis
// under the state until the callback.
type OAuthFlow struct {
	// State goes in the authorization request's state parameter.
	State string
	// Challenge goes in code_challenge.
	Challenge string
	// ChallengeMethod goes in code_challenge_method: always "S256".
	ChallengeMethod string
}

// BeginOAuth mints the one-time state of a login at provider ("google"),
// bound to the pre-login session (the session cookie the user has before
// logging in), with a PKCE verifier sealed under it, valid for ttl
// (DefaultOAuthTTL if 0). RFC 9700 asks for both: the state against
// cross-site request forgery and login CSRF, PKCE against stolen codes.
func (s *Store) BeginOAuth(ctx context.Context, provider, session string, ttl time.Duration) (OAuthFlow, error) {
	if ttl == 0 {
		ttl = DefaultOAuthTTL
	}
	v := NewVerifier()
	st, err := s.Mint(ctx, "oauth:"+provider, session, ttl, []byte(v))
	if err != nil {
		return OAuthFlow{}, err
	}
	return OAuthFlow{State: st, Challenge: S256Challenge(v), ChallengeMethod: "S256"}, nil
}

// FinishOAuth consumes the state the provider sent back to the callback,
// checks that it was minted for this provider and this pre-login session,
// and returns the PKCE verifier to send with the code to the token
// endpoint (code_verifier). Errors as for [Store.Consume]: a state from
// another session is [ErrWrongSubject], a second callback
// [ErrExpiredOrUsed].
func (s *Store) FinishOAuth(ctx context.Context, provider, session, state string) (verifier string, err error) {
	b, err := s.Consume(ctx, "oauth:"+provider, state, session)
	if err != nil {
		return "", err
	}
	return string(b), nil
}

// NewVerifier returns a PKCE code verifier (RFC 7636 section 4.1): 32
// random bytes in base64url without padding, 43 characters of the
// unreserved set.
func NewVerifier() string {
	b := make([]byte, 32)
	_, _ = rand.Read(b) // crypto/rand.Read never fails (Go 1.24+).
	return base64.RawURLEncoding.EncodeToString(b)
}

// S256Challenge returns the S256 code challenge of verifier (RFC 7636
// section 4.2): BASE64URL(SHA256(ASCII(verifier))), without padding.
func S256Challenge(verifier string) string {
	h := sha256.Sum256([]byte(verifier))
	return base64.RawURLEncoding.EncodeToString(h[:])
}
