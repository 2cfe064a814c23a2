package dbcache_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strconv"

	"github.com/tiercache/tiercache/dbcache"
	"github.com/tiercache/tiercache/tier"
)

// A query function read through a cache. The second and third reads of
// each id are answered by the cache, including the cached "not found".
func ExampleWrap() {
	// A query function, as sqlc would generate it.
	names := map[int64]string{42: "Ada Lovelace"}
	queries := 0
	getName := func(_ context.Context, id int64) (string, error) {
		queries++
		name, ok := names[id]
		if !ok {
			return "", sql.ErrNoRows // or pgx.ErrNoRows: no option needed either way
		}
		return name, nil
	}

	// An L1-only cache; give it L2: goredis.Must(client, nil) to share it.
	c := tier.Must(&tier.Options[string]{Name: "names"})
	defer c.Close()
	names42 := dbcache.Wrap(c,
		func(id int64) string { return "name:" + strconv.FormatInt(id, 10) },
		getName)

	ctx := context.Background()
	for range 3 {
		name, err := names42.Get(ctx, 42)
		fmt.Println(name, err)
	}
	for range 3 {
		_, err := names42.Get(ctx, 7)
		fmt.Println(errors.Is(err, sql.ErrNoRows), errors.Is(err, dbcache.ErrNotFound))
	}
	fmt.Println("queries:", queries)
	// Output:
	// Ada Lovelace <nil>
	// Ada Lovelace <nil>
	// Ada Lovelace <nil>
	// true true
	// true true
	// true true
	// queries: 2
}

// A write that drops what it changed once it has succeeded, on every
// instance; the Query names the key, so the write site does not.
func ExampleWrapWrite() {
	names := map[int64]string{42: "Ada"}
	c := tier.Must(&tier.Options[string]{Name: "names"})
	defer c.Close()
	getName := dbcache.Wrap(c,
		func(id int64) string { return "name:" + strconv.FormatInt(id, 10) },
		func(_ context.Context, id int64) (string, error) { return names[id], nil })

	type rename struct {
		id   int64
		name string
	}
	setName := dbcache.WrapWrite(
		func(_ context.Context, r rename) (struct{}, error) {
			names[r.id] = r.name // UPDATE ... and COMMIT
			return struct{}{}, nil
		},
		func(r rename, _ struct{}) []dbcache.Invalidation {
			return []dbcache.Invalidation{getName.Invalidation(r.id)}
		})

	ctx := context.Background()
	before, _ := getName.Get(ctx, 42)
	if _, err := setName(ctx, rename{42, "Ada Lovelace"}); err != nil {
		fmt.Println(err)
	}
	after, _ := getName.Get(ctx, 42)
	fmt.Println(before, "->", after)
	// Output: Ada -> Ada Lovelace
}

// Forget drops cached values directly, for writes made outside WrapWrite;
// Peek looks at this process's L1 without running the query.
func ExampleQuery_Forget() {
	names := map[int64]string{42: "Ada"}
	c := tier.Must(&tier.Options[string]{Name: "names"})
	defer c.Close()
	getName := dbcache.Wrap(c,
		func(id int64) string { return "name:" + strconv.FormatInt(id, 10) },
		func(_ context.Context, id int64) (string, error) { return names[id], nil })

	ctx := context.Background()
	v, _ := getName.Get(ctx, 42)
	fmt.Println(v)

	names[42] = "Ada Lovelace" // UPDATE ... and COMMIT
	if err := getName.Forget(ctx, 42); err != nil {
		fmt.Println(err)
	}
	_, ok := getName.Peek(42) // after Forget, never the old value
	fmt.Println(ok)
	v, _ = getName.Get(ctx, 42)
	fmt.Println(v)
	// Output:
	// Ada
	// false
	// Ada Lovelace
}
