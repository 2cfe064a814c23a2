package profiles_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/tiercache/tiercache/internal/redistest"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m,
		// ristretto's Close does not wait for its background goroutines.
		goleak.IgnoreTopFunction("github.com/dgraph-io/ristretto/v2.(*Cache[...]).processItems"),
		goleak.IgnoreTopFunction("github.com/dgraph-io/ristretto/v2.(*defaultPolicy[...]).processItems"),
		// go-redis pool reapers exit asynchronously after Client.Close.
		goleak.IgnoreAnyFunction("github.com/redis/go-redis/v9/internal/pool.(*ConnPool).reaper"),
	)
}

// pgDSN is the PostgreSQL the tests use: PG_DSN, else the README's.
func pgDSN() string {
	if dsn := os.Getenv("PG_DSN"); dsn != "" {
		return dsn
	}
	return "postgres://postgres@127.0.0.1:5432/test?sslmode=disable"
}

// schema creates a PostgreSQL schema for t, dropped when t ends, and
// returns a URL whose connections work in it.
func schema(t *testing.T) string {
	t.Helper()
	var b [6]byte
	_, _ = rand.Read(b[:])
	name := "profiles_test_" + hex.EncodeToString(b[:])
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	pool, err := pgxpool.New(ctx, pgDSN())
	require.NoError(t, err)
	t.Cleanup(pool.Close)
	_, err = pool.Exec(ctx, "CREATE SCHEMA "+pgx.Identifier{name}.Sanitize())
	require.NoError(t, err, "is PostgreSQL running? ./scripts/test starts it")
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		_, err := pool.Exec(ctx, "DROP SCHEMA "+pgx.Identifier{name}.Sanitize()+" CASCADE")
		require.NoError(t, err)
	})
	u, err := url.Parse(pgDSN())
	require.NoError(t, err)
	q := u.Query()
	q.Set("search_path", name)
	u.RawQuery = q.Encode()
	return u.String()
}

// TestExample runs the package's Example against a Redis and a schema of
// its own, and checks what it prints: every read of a missing profile is a
// 404 with pgx and no option, on either instance; B sees A's update.
func TestExample(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	var out strings.Builder
	require.NoError(t, run(t.Context(), schema(t), srv.Addr(), &out))
	require.Equal(t, `A GET /profiles/1: 200 Ada Lovelace
B GET /profiles/1: 200 Ada Lovelace
A GET /profiles/404: 404
A GET /profiles/404: 404
B GET /profiles/404: 404
A PUT /profiles/1: 200 Ada, Countess of Lovelace
A GET /profiles/1: 200 Ada, Countess of Lovelace
B GET /profiles/1: 200 Ada, Countess of Lovelace
`, out.String())
}
