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

func ExampleWrap() {
	// A query function, as sqlc would generate it.
	names := map[int64]string{42: "Ada Lovelace"}
	queries := 0
	getName := func(_ context.Context, id int64) (string, error) {
		queries++
		name, ok := names[id]
		if !ok {
			return "", sql.ErrNoRows
		}
		return name, nil
	}

	// An L1-only cache; give it L2: goredis.Must(client, nil) to share it.
	c := tier.Must(&tier.Options[string]{Name: "names"})
	defer c.Close()
	cachedGetName := dbcache.Wrap(c,
		func(id int64) string { return "name:" + strconv.FormatInt(id, 10) },
		getName)

	ctx := context.Background()
	for range 3 {
		name, err := cachedGetName(ctx, 42)
		fmt.Println(name, err)
	}
	for range 2 {
		_, err := cachedGetName(ctx, 7)
		fmt.Println(errors.Is(err, sql.ErrNoRows))
	}
	fmt.Println("queries:", queries)
	// Output:
	// Ada Lovelace <nil>
	// Ada Lovelace <nil>
	// Ada Lovelace <nil>
	// true
	// true
	// queries: 2
}

func ExampleWrapWrite() {
	names := map[int64]string{42: "Ada"}
	c := tier.Must(&tier.Options[string]{Name: "names"})
	defer c.Close()
	key := func(id int64) string { return "name:" + strconv.FormatInt(id, 10) }
	getName := dbcache.Wrap(c, key, func(_ context.Context, id int64) (string, error) {
		return names[id], nil
	})

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
			return []dbcache.Invalidation{{Cache: c, Keys: []string{key(r.id)}}}
		})

	ctx := context.Background()
	before, _ := getName(ctx, 42)
	if _, err := setName(ctx, rename{42, "Ada Lovelace"}); err != nil {
		fmt.Println(err)
	}
	after, _ := getName(ctx, 42)
	fmt.Println(before, "->", after)
	// Output: Ada -> Ada Lovelace
}
