package primopts

import (
	"errors"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

var errBad = errors.New("pkg: invalid options")

func TestInvalidWrapsTheSentinel(t *testing.T) {
	err := Invalid(errBad, "%s is %d", "X", 3)
	if !errors.Is(err, errBad) || err.Error() != "pkg: invalid options: X is 3" {
		t.Fatalf("Invalid = %v", err)
	}
}

func TestNames(t *testing.T) {
	if why := Names(nil, new(string), new(string), "d"); why != "nil Client" {
		t.Fatalf("nil client: %q", why)
	}
	client := redis.NewClient(&redis.Options{Addr: "127.0.0.1:6379"})
	defer client.Close()
	var ns, name string
	if why := Names(client, &ns, &name, "d"); why != "" || ns != "d" || name != "d" {
		t.Fatalf("defaults: %q %q %q", why, ns, name)
	}
	ns, name = "a{b}", ""
	if why := Names(client, &ns, &name, "d"); why == "" || name != "" {
		t.Fatalf("brace namespace accepted: %q %q", why, name)
	}
	ns, name = "x", "n"
	if why := Namespace(&ns, nil, "d"); why != "" || ns != "x" {
		t.Fatalf("Namespace: %q %q", why, ns)
	}
}

func TestDefaults(t *testing.T) {
	a, b := time.Duration(0), time.Second
	if why := Defaults(Field[time.Duration]{"A", &a, time.Minute}, Field[time.Duration]{"B", &b, time.Hour}); why != "" || a != time.Minute || b != time.Second {
		t.Fatalf("Defaults: %q %v %v", why, a, b)
	}
	n := -1
	if why := Defaults(Field[int]{"N", &n, 5}); why != "N is negative" {
		t.Fatalf("negative: %q", why)
	}
}

type breaker interface{ Allow() bool }

type stub struct{}

func (stub) Allow() bool { return true }

func TestBreaker(t *testing.T) {
	mk := func() breaker { return stub{} }
	if b := Breaker[breaker](true, stub{}, mk); b != nil {
		t.Fatalf("off: %v", b)
	}
	if b := Breaker[breaker](false, nil, mk); b == nil {
		t.Fatal("default not made")
	}
	given := &struct{ stub }{}
	if b := Breaker[breaker](false, given, mk); b != given {
		t.Fatalf("given breaker replaced: %v", b)
	}
}

func TestCopy(t *testing.T) {
	type opts struct{ N int }
	if c := Copy[opts](nil); c != (opts{}) {
		t.Fatalf("Copy(nil) = %v", c)
	}
	o := &opts{N: 3}
	c := Copy(o)
	o.N = 4
	if c.N != 3 {
		t.Fatalf("Copy shares the caller's options: %v", c)
	}
}
