package session

import (
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestToken_shape: a token is "<tag>:<ref>.<secret>", its first part is
// the L1 key, and refs and secrets are fresh for every token.
func TestToken_shape(t *testing.T) {
	t.Parallel()
	h := newHasher([]byte("token-secret-0123"))
	tag := h.userTag("u")
	refs, secrets := map[string]bool{}, map[string]bool{}
	for range 1000 {
		tok := newToken(tag)
		require.True(t, wellFormed(tok), tok)
		key := keyOf(tok)
		gotTag, ref, ok := splitKey(key)
		require.True(t, ok, key)
		require.Equal(t, tag, gotTag)
		require.False(t, refs[ref], "ref drawn twice")
		require.False(t, secrets[secretOf(tok)], "secret drawn twice")
		refs[ref], secrets[secretOf(tok)] = true, true
		require.NotContains(t, h.tokenHash(tok), secretOf(tok))
	}
	tok := newToken(tag)
	for _, bad := range []string{"", tok[:tokenLen-1], tok + "A", strings.Replace(tok, ".", "A", 1),
		tok[:keyLen+1] + "!" + tok[keyLen+2:], strings.Replace(tok, ":", "A", 1)} {
		require.False(t, wellFormed(bad), bad)
	}
	require.False(t, shaped(tok[:tokenLen-1]))
}

// TestSession_verify: a Session accepts its token's secret only, before
// and after it kept the verified secret, and a wrong secret presented
// first is never kept.
func TestSession_verify(t *testing.T) {
	t.Parallel()
	h := newHasher([]byte("token-secret-0123"))
	tok := newToken(h.userTag("u"))
	forged := tok[:keyLen+1] + strings.Repeat("A", secretLen)
	require.True(t, shaped(forged))
	other := keyOf(tok) + "." + secretOf(newToken(h.userTag("u")))

	s := &Session{hash: h.tokenHash(tok)}
	require.False(t, s.verify(h, forged), "forged secret, nothing kept yet")
	require.False(t, s.verify(h, other))
	require.Equal(t, uint32(0), s.verified.Load(), "a wrong secret is not kept")
	require.True(t, s.verify(h, tok))
	require.Equal(t, uint32(2), s.verified.Load())
	require.True(t, s.verify(h, tok), "from the kept secret")
	require.False(t, s.verify(h, forged), "from the kept secret")
	require.False(t, s.verify(h, other), "from the kept secret")

	require.False(t, (&Session{}).verify(h, tok), "a session with no stored hash accepts nothing")
}

// TestSession_verifyConcurrent: concurrent first reads, some with the
// right secret and some with a wrong one, never accept a wrong one and
// keep the right one (run with -race).
func TestSession_verifyConcurrent(t *testing.T) {
	t.Parallel()
	h := newHasher([]byte("token-secret-0123"))
	tok := newToken(h.userTag("u"))
	other := keyOf(tok) + "." + secretOf(newToken(h.userTag("u")))
	for range 50 {
		s := &Session{hash: h.tokenHash(tok)}
		var wg sync.WaitGroup
		errs := make(chan string, 8)
		for g := range 8 {
			wg.Go(func() {
				for range 20 {
					if g%2 == 0 && !s.verify(h, tok) {
						errs <- "the token refused"
					}
					if g%2 == 1 && s.verify(h, other) {
						errs <- "another secret accepted"
					}
				}
			})
		}
		wg.Wait()
		close(errs)
		for e := range errs {
			t.Fatal(e)
		}
		require.Equal(t, uint32(2), s.verified.Load())
		require.Equal(t, wordsOf(secretOf(tok)), s.secret)
	}
}

// TestSecretWords_equal: the word-wise comparison finds a difference in
// any one byte of a secret.
func TestSecretWords_equal(t *testing.T) {
	t.Parallel()
	sec := secretOf(newToken(strings.Repeat("a", tagLen)))
	require.Len(t, sec, secretLen)
	w := wordsOf(sec)
	require.True(t, w.equal(sec))
	for i := range secretLen {
		b := []byte(sec)
		b[i] ^= 1
		require.False(t, w.equal(string(b)), "byte %d differs", i)
	}
}
