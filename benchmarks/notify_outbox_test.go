package benchmarks

import (
	"context"
	"database/sql"
	"fmt"
	"testing"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib" // database/sql driver "pgx"
	"github.com/redis/go-redis/v9"

	"github.com/tiercache/tiercache/benchmarks/internal/pgorigin"
	"github.com/tiercache/tiercache/benchmarks/internal/redisproc"
	"github.com/tiercache/tiercache/notify"
)

// TestNotifyOutbox runs notify's transactional enqueue against the real
// PostgreSQL (PG_DSN) and a private redis-server (the root module has no
// PostgreSQL driver): a rolled-back booking queues nothing; a committed one
// is queued even when the process "dies" between commit and relay (a new
// Outbox relays the row) and when a relay dies between its enqueue and its
// delete (the row is relayed again and absorbed by the dedup key).
func TestNotifyOutbox(t *testing.T) {
	ctx := t.Context()
	srv, err := redisproc.StartOwned()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.Close() })
	rdb := redis.NewClient(&redis.Options{Addr: srv.Addr(), ContextTimeoutEnabled: true})
	t.Cleanup(func() { _ = rdb.Close() })
	db, err := sql.Open("pgx", pgorigin.DSN())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = db.Close() })
	table := fmt.Sprintf("notify_outbox_%s", runID)
	t.Cleanup(func() { _, _ = db.ExecContext(context.Background(), "DROP TABLE IF EXISTS "+table) })

	q, err := notify.New(&notify.Options{Client: rdb, Namespace: namespace("outbox"), MaxItems: 1})
	if err != nil {
		t.Fatal(err)
	}
	box, err := notify.NewOutbox(&notify.OutboxOptions{DB: db, Queue: q, Table: table})
	if err != nil {
		t.Fatal(err)
	}
	if err := box.CreateTable(ctx); err != nil {
		t.Fatalf("is PostgreSQL running? %v", err)
	}
	book := func(user string, commit bool) {
		tx, err := db.BeginTx(ctx, nil)
		if err != nil {
			t.Fatal(err)
		}
		if err := box.Add(ctx, tx, notify.Notification{User: user, Channel: notify.Email, Payload: []byte("confirmed")}); err != nil {
			t.Fatal(err)
		}
		if commit {
			err = tx.Commit()
		} else {
			err = tx.Rollback()
		}
		if err != nil {
			t.Fatal(err)
		}
	}

	book("rolled-back", false)
	book("committed", true) // then the process "dies": no relay
	// A new process: a new Outbox over the same table.
	box2, err := notify.NewOutbox(&notify.OutboxOptions{DB: db, Queue: q, Table: table})
	if err != nil {
		t.Fatal(err)
	}
	if n, err := box2.Relay(ctx); err != nil || n != 1 {
		t.Fatalf("relay: %d rows, %v; want 1", n, err)
	}

	// A relay that dies between its enqueue and its delete: the row is
	// queued (with the relay's dedup key) but still in the table.
	book("relay-died", true)
	var id int64
	if err := db.QueryRowContext(ctx, "SELECT id FROM "+table).Scan(&id); err != nil {
		t.Fatal(err)
	}
	if _, err := q.Enqueue(ctx, notify.Notification{User: "relay-died", Channel: notify.Email, DedupKey: fmt.Sprint("outbox:", id), Payload: []byte("confirmed")}); err != nil {
		t.Fatal(err)
	}
	if n, err := box.Relay(ctx); err != nil || n != 1 {
		t.Fatalf("relay: %d rows, %v; want 1", n, err)
	}

	rec := &notify.RecordingSender{}
	c, err := notify.NewConsumer(q, &notify.ConsumerOptions{Sender: rec})
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for len(rec.Delivered()) < 2 && time.Now().Before(deadline) {
		if _, err := c.RunOnce(ctx); err != nil {
			t.Fatal(err)
		}
	}
	got := map[string]int{}
	for _, m := range rec.Delivered() {
		got[m.User] += len(m.Items)
	}
	if want := map[string]int{"committed": 1, "relay-died": 1}; fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("delivered %v, want %v", got, want)
	}
	var left int
	if err := db.QueryRowContext(ctx, "SELECT count(*) FROM "+table).Scan(&left); err != nil || left != 0 {
		t.Fatalf("%d rows left in the outbox (%v)", left, err)
	}
}
