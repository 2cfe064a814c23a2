package keyhash_test

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/tiercache/tiercache/internal/keyhash"
)

func TestHasher_Base64(t *testing.T) {
	t.Parallel()
	secret := []byte("keyhash-secret")
	h := keyhash.New(secret)
	secret[0] = 'X' // New copied it
	want := func(prefix, s string, n int) string {
		m := hmac.New(sha256.New, []byte("keyhash-secret"))
		m.Write([]byte(prefix + s))
		return base64.RawURLEncoding.EncodeToString(m.Sum(nil)[:n])
	}
	tests := []struct {
		name, prefix, s string
		n               int
	}{
		{"whole", "", "token", keyhash.Size},
		{"cut", "", "token", 16},
		{"prefix", "s\x00", "token", 16},
		{"longer than a hash", "", "token", 64},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			require.Equal(t, want(tt.prefix, tt.s, min(tt.n, keyhash.Size)), h.Base64(tt.prefix, tt.s, tt.n))
		})
	}
	require.NotEqual(t, h.Base64("u\x00", "a", 16), h.Base64("s\x00", "a", 16), "the prefix separates domains")
}

func TestHasher_concurrent(t *testing.T) {
	t.Parallel()
	h := keyhash.New([]byte("keyhash-secret"))
	want := h.Base64("", "x", 16)
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range 500 {
				if got := h.Base64("", "x", 16); got != want {
					t.Errorf("got %q, want %q", got, want)
				}
			}
		})
	}
	wg.Wait()
}
