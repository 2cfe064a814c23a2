package codec_test

import (
	"errors"
	"fmt"
	"time"

	"github.com/tiercache/tiercache/codec"
)

func ExampleDecode() {
	type user struct {
		Name  string `msgpack:"name"`
		Email string `msgpack:"email"`
	}
	now := time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC).UnixNano()
	h := codec.Header{
		Schema:     2,
		Created:    now,
		SoftExpiry: now + int64(time.Minute),
		Deadline:   now + int64(time.Hour),
	}
	data, err := codec.Encode(codec.Msgpack(), h, user{Name: "Ada", Email: "ada@example.com"}, 1024)
	if err != nil {
		panic(err)
	}

	var u user
	got, err := codec.Decode(codec.Msgpack(), data, 2, 0, &u)
	fmt.Println(u.Name, got.Schema, time.Duration(got.SoftExpiry-got.Created), err)

	// A reader that expects another schema treats the value as a miss.
	_, err = codec.Decode(codec.Msgpack(), data, 3, 0, &u)
	fmt.Println(errors.Is(err, codec.ErrCorrupt), errors.Is(err, codec.ErrSchemaMismatch))
	fmt.Println(err)
	// Output:
	// Ada 2 1m0s <nil>
	// true true
	// codec: corrupt value: schema 2, want 3: schema mismatch
}

func ExampleEncode_negative() {
	// A cached "not found" is a bare header.
	data, err := codec.Encode(codec.JSON(), codec.Header{Flags: codec.FlagNegative}, nil, 0)
	if err != nil {
		panic(err)
	}
	var v map[string]any
	h, err := codec.Decode(codec.JSON(), data, 0, 0, &v)
	fmt.Println(len(data) == codec.HeaderSize, h.Flags&codec.FlagNegative != 0, v == nil, err)
	// Output:
	// true true true <nil>
}
