package goredis_test

import (
	"testing"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/tiercache/tiercache/backends/goredis"
)

func TestNew_RequiresContextTimeouts(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		client  redis.UniversalClient
		wantErr error
	}{
		{name: "client without", client: redis.NewClient(&redis.Options{Addr: "127.0.0.1:1"}), wantErr: goredis.ErrContextTimeouts},
		{name: "client with", client: redis.NewClient(&redis.Options{Addr: "127.0.0.1:1", ContextTimeoutEnabled: true})},
		{name: "cluster without", client: redis.NewClusterClient(&redis.ClusterOptions{Addrs: []string{"127.0.0.1:1"}}), wantErr: goredis.ErrContextTimeouts},
		{name: "cluster with", client: redis.NewClusterClient(&redis.ClusterOptions{Addrs: []string{"127.0.0.1:1"}, ContextTimeoutEnabled: true})},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			defer tt.client.Close()
			_, err := goredis.New(tt.client, nil)
			if tt.wantErr != nil {
				require.ErrorIs(t, err, tt.wantErr)
				return
			}
			require.NoError(t, err)
		})
	}
	_, err := goredis.New(nil, nil)
	require.Error(t, err)
}
