package tierotel

import (
	"context"
	"errors"
	"fmt"
	"net"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/tiercache/tiercache/codec"
	"github.com/tiercache/tiercache/tier"
)

func TestErrorType(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		err  error
		want string
	}{
		{"deadline", fmt.Errorf("goredis: get: %w", context.DeadlineExceeded), "timeout"},
		{"canceled", context.Canceled, "canceled"},
		{"panic", &tier.PanicError{Value: "user alice@example.com"}, "panic"},
		{"too large", &tier.ValueTooLargeError{Size: 2, Limit: 1}, "value_too_large"},
		{"corrupt", fmt.Errorf("x: %w", tier.ErrCorrupt), "corrupt"},
		{"codec corrupt", fmt.Errorf("x: %w", codec.ErrCorrupt), "corrupt"},
		{"closed", tier.ErrClosed, "closed"},
		{"net", fmt.Errorf("goredis: get: %w", &net.OpError{Op: "dial", Err: errors.New("refused")}), "*net.OpError"},
		{"plain", errors.New("alice@example.com not allowed"), "*errors.errorString"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			require.Equal(t, tt.want, errorType(tt.err))
		})
	}
}

func TestErrorDescription(t *testing.T) {
	t.Parallel()
	require.Equal(t, "tier: loader panicked", errorDescription(&tier.PanicError{Value: "alice@example.com", Stack: []byte("stack")}))
	require.Equal(t, "db down", errorDescription(errors.New("db down")))
}

func TestSpanName(t *testing.T) {
	t.Parallel()
	require.Equal(t, "tiercache l2.get", spanName(tier.OpL2Get))
	require.Equal(t, "tiercache load", spanName(tier.OpLoad))
	require.Equal(t, "tiercache l2.set", spanName(tier.OpL2Set))
	require.Equal(t, "tiercache l2.delete", spanName(tier.OpL2Delete))
	require.Equal(t, "tiercache unknown", spanName(tier.Op(200)))
	require.Equal(t, "cache.fallback", eventName(tier.EventFallback))
	require.Equal(t, "cache.unknown", eventName(tier.EventKind(200)))
}
