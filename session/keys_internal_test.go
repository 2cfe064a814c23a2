package session

import (
	"sync"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/require"
)

// memoTokens returns n tokens drawn as newToken draws them, and their L1
// keys.
func memoTokens(t *testing.T, h *hasher, n int) (toks, keys []string) {
	t.Helper()
	tag := h.userTag("u")
	for range n {
		tok := newToken(tag)
		require.True(t, wellFormed(tok))
		toks = append(toks, tok)
		keys = append(keys, h.keyOf(tok))
	}
	return toks, keys
}

func TestMemo_getPutForget(t *testing.T) {
	t.Parallel()
	h := newHasher([]byte("memo-secret"))
	m := newMemo()
	toks, keys := memoTokens(t, h, 3)
	for i, tok := range toks {
		_, ok := m.get(tok)
		require.False(t, ok, "empty memo")
		m.put(tok, keys[i])
		m.put(tok, keys[i]) // a second put of the same token takes no second way
	}
	for i, tok := range toks {
		key, ok := m.get(tok)
		require.True(t, ok)
		require.Equal(t, keys[i], key)
	}
	m.forget(toks[1])
	_, ok := m.get(toks[1])
	require.False(t, ok, "forgotten")
	key, ok := m.get(toks[0])
	require.True(t, ok, "the others stay")
	require.Equal(t, keys[0], key)

	short := toks[2][:tokenLen-1]
	m.put(short, "x")
	_, ok = m.get(short)
	require.False(t, ok, "a string that is not a token's length is never memoized")
}

// TestMemo_spread checks that the memo keeps nearly every one of as many
// live tokens as it has sets (a direct-mapped table of four times the
// entries kept about 88%: every colliding pair evicted each other).
func TestMemo_spread(t *testing.T) {
	t.Parallel()
	h := newHasher([]byte("memo-secret"))
	m := newMemo()
	toks, keys := memoTokens(t, h, memoSets)
	for i, tok := range toks {
		m.put(tok, keys[i])
	}
	kept := 0
	for i, tok := range toks {
		if key, ok := m.get(tok); ok {
			require.Equal(t, keys[i], key)
			kept++
		}
	}
	// With uniform sets, a set overflows (a fifth token) with probability
	// 0.4%: about 16 tokens lost of 4,096.
	require.GreaterOrEqual(t, kept, memoSets*99/100, "kept %d of %d", kept, memoSets)
}

// TestMemo_sameSetConcurrent has goroutines put, get and forget tokens
// that share a set and a fingerprint (the worst case: only the string
// comparison tells them apart), and checks that get never answers with
// another token's key.
func TestMemo_sameSetConcurrent(t *testing.T) {
	t.Parallel()
	h := newHasher([]byte("memo-secret"))
	m := newMemo()
	toks, _ := memoTokens(t, h, 2*memoWays)
	keys := make([]string, len(toks))
	for i := range toks {
		// Same eight characters after the dot: same set, same fingerprint.
		toks[i] = toks[0][:tagLen+9] + toks[i][tagLen+9:]
		require.True(t, wellFormed(toks[i]))
		keys[i] = h.keyOf(toks[i])
	}
	s0, fp0, _ := m.set(toks[0])
	for _, tok := range toks[1:] {
		s, fp, _ := m.set(tok)
		require.Same(t, s0, s)
		require.Equal(t, fp0, fp)
	}
	var wg sync.WaitGroup
	var hits atomic.Int64
	for g := range len(toks) {
		wg.Go(func() {
			for r := range 2000 {
				i := (g + r) % len(toks)
				switch r % 3 {
				case 0:
					m.put(toks[i], keys[i])
				case 1:
					if key, ok := m.get(toks[i]); ok {
						hits.Add(1)
						if key != keys[i] {
							t.Errorf("token %d answered with key %q, want %q", i, key, keys[i])
						}
					}
				case 2:
					if r%30 == 2 {
						m.forget(toks[i])
					}
				}
			}
		})
	}
	wg.Wait()
	require.Positive(t, hits.Load(), "some gets found their token (not vacuous)")
	held := 0
	for i, tok := range toks {
		if key, ok := m.get(tok); ok {
			require.Equal(t, keys[i], key)
			held++
		}
	}
	require.LessOrEqual(t, held, memoWays, "a set holds at most memoWays tokens")
}
