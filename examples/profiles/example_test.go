package profiles_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/redis/go-redis/v9"

	"github.com/tiercache/tiercache/backends/goredis"
	"github.com/tiercache/tiercache/examples/profiles"
	"github.com/tiercache/tiercache/invalidate"
	"github.com/tiercache/tiercache/tier"
)

// Two instances of the service over one PostgreSQL and one Redis, as two
// processes would run: each has its own Redis client, invalidation bus and
// cache. It needs the servers the tests use (the README's test command
// starts them), so it has no Output block; TestExample runs it against a
// Redis and a PostgreSQL schema of its own and checks what it prints:
//
//	A GET /profiles/1: 200 Ada Lovelace
//	B GET /profiles/1: 200 Ada Lovelace
//	A GET /profiles/404: 404
//	A GET /profiles/404: 404
//	B GET /profiles/404: 404
//	A PUT /profiles/1: 200 Ada, Countess of Lovelace
//	A GET /profiles/1: 200 Ada, Countess of Lovelace
//	B GET /profiles/1: 200 Ada, Countess of Lovelace
func Example() {
	err := run(context.Background(), "postgres://postgres@127.0.0.1:5432/test", "127.0.0.1:6379", os.Stdout)
	if err != nil {
		fmt.Println(err)
	}
}

// instance is one process of the service.
type instance struct {
	rdb   *redis.Client
	stop  context.CancelFunc // stops the bus
	done  chan error         // the bus's Run's result
	cache *tier.Cache[profiles.Profile]
	svc   *profiles.Service
	http  *httptest.Server
}

func newInstance(queries *profiles.Queries, redisAddr string) (*instance, error) {
	in := &instance{
		rdb: redis.NewClient(&redis.Options{
			Addr:                  redisAddr,
			ContextTimeoutEnabled: true, // required: the cache bounds every Redis call itself
		}),
		done: make(chan error, 1),
	}
	bus, err := invalidate.New(in.rdb, nil)
	if err != nil {
		return nil, errors.Join(err, in.rdb.Close())
	}
	// The bus's goroutines are the caller's: Run until the instance stops.
	var ctx context.Context
	ctx, in.stop = context.WithCancel(context.Background())
	go func() { in.done <- bus.Run(ctx) }()

	in.cache, err = tier.New(&tier.Options[profiles.Profile]{
		Name:        "profiles",
		Namespace:   "profiles", // the same on every instance, unique among the caches on this Redis
		L2:          goredis.Must(in.rdb, nil),
		Invalidator: bus,
		TTL:         10 * time.Minute,
		L1TTL:       time.Minute,
	})
	if err != nil {
		return nil, errors.Join(err, in.close())
	}
	in.svc = profiles.NewService(queries, in.cache)
	in.http = httptest.NewServer(in.svc.Handler())
	return in, nil
}

func (in *instance) close() error {
	if in.http != nil {
		in.http.Close()
	}
	var err error
	if in.cache != nil {
		err = in.cache.Close()
	}
	in.stop()
	return errors.Join(err, <-in.done, in.rdb.Close())
}

// call makes an HTTP request to an instance and returns the status and the
// profile's name.
func (in *instance) call(ctx context.Context, method, path, body string) (int, string, error) {
	req, err := http.NewRequestWithContext(ctx, method, in.http.URL+path, strings.NewReader(body))
	if err != nil {
		return 0, "", err
	}
	resp, err := in.http.Client().Do(req) // closed with the server
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	var p profiles.Profile
	if resp.StatusCode == http.StatusOK {
		if err := json.NewDecoder(resp.Body).Decode(&p); err != nil {
			return 0, "", err
		}
	} else {
		_, _ = io.Copy(io.Discard, resp.Body)
	}
	return resp.StatusCode, p.Name, nil
}

func run(ctx context.Context, databaseURL, redisAddr string, out io.Writer) (err error) {
	pool, err := pgxpool.New(ctx, databaseURL)
	if err != nil {
		return err
	}
	defer pool.Close()
	if _, err := pool.Exec(ctx, profiles.Schema); err != nil {
		return err
	}
	queries := profiles.NewQueries(pool)

	a, err := newInstance(queries, redisAddr)
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, a.close()) }()
	b, err := newInstance(queries, redisAddr)
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, b.close()) }()

	// A write made outside the service: then Forget what the caches may
	// hold of it, on every instance.
	if _, err := queries.PutProfile(ctx, profiles.PutProfileParams{ID: 1, Name: "Ada Lovelace"}); err != nil {
		return err
	}
	if err := a.svc.Forget(ctx, 1); err != nil {
		return err
	}

	show := func(name string, in *instance, method, path, body string) (string, error) {
		status, got, err := in.call(ctx, method, path, body)
		if err != nil {
			return "", err
		}
		fmt.Fprintln(out, strings.TrimSpace(fmt.Sprintf("%s %s %s: %d %s", name, method, path, status, got)))
		return got, nil
	}
	steps := []struct {
		name               string
		in                 *instance
		method, path, body string
	}{
		{"A", a, "GET", "/profiles/1", ""},   // the database, then L2 and A's L1
		{"B", b, "GET", "/profiles/1", ""},   // L2
		{"A", a, "GET", "/profiles/404", ""}, // "not found", cached
		{"A", a, "GET", "/profiles/404", ""}, // ... and still a 404
		{"B", b, "GET", "/profiles/404", ""}, // from L2
		{"A", a, "PUT", "/profiles/1", `{"name": "Ada, Countess of Lovelace"}`},
		{"A", a, "GET", "/profiles/1", ""}, // the writer reads its own write at once
	}
	for _, s := range steps {
		if _, err := show(s.name, s.in, s.method, s.path, s.body); err != nil {
			return err
		}
	}

	// B drops its copy when A's invalidation reaches it over Redis pub/sub
	// (typically within a millisecond); until then it may answer the old
	// profile. Ask until it has.
	for deadline := time.Now().Add(5 * time.Second); ; {
		status, got, err := b.call(ctx, "GET", "/profiles/1", "")
		if err != nil {
			return err
		}
		if got == "Ada, Countess of Lovelace" {
			fmt.Fprintf(out, "B GET /profiles/1: %d %s\n", status, got)
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("B still answers %d %q", status, got)
		}
		time.Sleep(time.Millisecond)
	}
}
