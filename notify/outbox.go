package notify

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// Execer is what [Outbox.Add] writes through: a *sql.Tx (the caller's
// transaction), or a *sql.DB or *sql.Conn.
type Execer interface {
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
}

// DefaultOutboxTable names the outbox table.
const DefaultOutboxTable = "notify_outbox"

// OutboxOptions configures an [Outbox]. NewOutbox copies it.
type OutboxOptions struct {
	// DB is the database the relay reads and deletes rows from. The SQL is
	// PostgreSQL's ($n placeholders, FOR UPDATE SKIP LOCKED). Required.
	DB *sql.DB
	// Queue receives the relayed notifications. Required.
	Queue *Queue
	// Table names the outbox table (letters, digits, '_' and '.').
	// Default: "notify_outbox".
	Table string
	// Batch bounds the rows one Relay moves. Default: 500.
	Batch int
}

// Outbox makes "the booking committed ⇒ its confirmation is queued" hold:
// [Outbox.Add] inserts the notification as a row in the caller's database
// transaction, so it commits or rolls back with the booking, and
// [Outbox.Relay] (run in a loop by [Outbox.Run], on any number of
// instances) moves committed rows to the streams and deletes them.
//
// A relay that dies between the enqueue and the delete leaves its rows
// in the table; the next relay enqueues them again with the same dedup key
// (the caller's, or "outbox:<row id>"), which the stream's dedup marker
// absorbs as long as the relay catches up within Options.DedupTTL. The
// relay never uses the Queue's local buffer: the table is its buffer while
// Redis is down. It is safe for concurrent use.
type Outbox struct {
	o                     OutboxOptions
	insert, sel, del, ddl string
}

var tableName = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)?$`)

// NewOutbox checks o and returns an Outbox.
func NewOutbox(o *OutboxOptions) (*Outbox, error) {
	var c OutboxOptions
	if o != nil {
		c = *o
	}
	if c.DB == nil || c.Queue == nil {
		return nil, fmt.Errorf("%w: outbox without DB or Queue", ErrInvalidOptions)
	}
	if c.Table == "" {
		c.Table = DefaultOutboxTable
	}
	if !tableName.MatchString(c.Table) {
		return nil, fmt.Errorf("%w: outbox table %q", ErrInvalidOptions, c.Table)
	}
	if c.Batch <= 0 {
		c.Batch = 500
	}
	t := c.Table
	return &Outbox{
		o:      c,
		ddl:    "CREATE TABLE IF NOT EXISTS " + t + " (id BIGSERIAL PRIMARY KEY, user_id TEXT NOT NULL, channel TEXT NOT NULL, dedup_key TEXT NOT NULL DEFAULT '', payload BYTEA, created_at TIMESTAMPTZ NOT NULL DEFAULT now())",
		insert: "INSERT INTO " + t + " (user_id, channel, dedup_key, payload) VALUES ($1, $2, $3, $4)",
		sel:    "SELECT id, user_id, channel, dedup_key, payload FROM " + t + " ORDER BY id LIMIT " + strconv.Itoa(c.Batch) + " FOR UPDATE SKIP LOCKED",
		del:    "DELETE FROM " + t + " WHERE id IN (",
	}, nil
}

// CreateTable creates the outbox table if it does not exist.
func (o *Outbox) CreateTable(ctx context.Context) error {
	if _, err := o.o.DB.ExecContext(ctx, o.ddl); err != nil {
		return fmt.Errorf("notify: create outbox table: %w", err)
	}
	return nil
}

// Add writes n to the outbox through tx, the caller's transaction: it is
// relayed only if tx commits.
func (o *Outbox) Add(ctx context.Context, tx Execer, n Notification) error {
	if err := n.check(); err != nil {
		return err
	}
	if _, err := tx.ExecContext(ctx, o.insert, n.User, string(n.Channel), n.DedupKey, n.Payload); err != nil {
		return fmt.Errorf("notify: outbox insert: %w", err)
	}
	return nil
}

// Relay moves up to Batch committed rows to the streams, oldest first, and
// deletes them, in one database transaction whose rows other relays skip.
// It returns how many rows it moved; on a Redis failure it deletes the
// rows moved so far and returns an error wrapping [ErrUnavailable].
func (o *Outbox) Relay(ctx context.Context) (int, error) {
	tx, err := o.o.DB.BeginTx(ctx, nil)
	if err != nil {
		return 0, fmt.Errorf("notify: outbox: %w", err)
	}
	defer func() { _ = tx.Rollback() }()
	rows, err := tx.QueryContext(ctx, o.sel)
	if err != nil {
		return 0, fmt.Errorf("notify: outbox select: %w", err)
	}
	type row struct {
		id int64
		n  Notification
	}
	var rs []row
	for rows.Next() {
		var r row
		var ch string
		if err := rows.Scan(&r.id, &r.n.User, &ch, &r.n.DedupKey, &r.n.Payload); err != nil {
			_ = rows.Close()
			return 0, fmt.Errorf("notify: outbox scan: %w", err)
		}
		r.n.Channel = Channel(ch)
		if r.n.DedupKey == "" {
			r.n.DedupKey = "outbox:" + strconv.FormatInt(r.id, 10)
		}
		rs = append(rs, r)
	}
	if err := errors.Join(rows.Err(), rows.Close()); err != nil {
		return 0, fmt.Errorf("notify: outbox rows: %w", err)
	}
	var done []string
	var perr error
	for _, r := range rs {
		if err := r.n.check(); err == nil {
			if _, err := o.o.Queue.push(ctx, r.n); errors.Is(err, ErrRejected) {
				o.o.Queue.event(ctx, Event{Kind: EventRefused, Channel: r.n.Channel, Items: 1, Err: err})
			} else if err != nil {
				perr = err
				break
			}
		}
		// A row that can never be queued (a channel this version does not
		// know, keys Redis refuses for good) is deleted too; Add refuses
		// rows of unknown channels.
		done = append(done, strconv.FormatInt(r.id, 10))
	}
	if len(done) > 0 {
		if _, err := tx.ExecContext(ctx, o.del+strings.Join(done, ",")+")"); err != nil {
			return 0, fmt.Errorf("notify: outbox delete: %w", err)
		}
		if err := tx.Commit(); err != nil {
			return 0, fmt.Errorf("notify: outbox commit: %w", err)
		}
		o.o.Queue.event(ctx, Event{Kind: EventRelayed, Items: len(done)})
	}
	return len(done), perr
}

// Run relays every interval (at once again while rows keep coming) until
// ctx ends, then returns nil.
func (o *Outbox) Run(ctx context.Context, interval time.Duration) error {
	if interval <= 0 {
		interval = time.Second
	}
	t := time.NewTimer(0)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		n, err := o.Relay(ctx)
		if err == nil && n == o.o.Batch {
			t.Reset(0)
			continue
		}
		t.Reset(interval)
	}
}
