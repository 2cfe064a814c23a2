// Package notify queues notifications (email, SMS, push) on Redis Streams
// and delivers them as digests, at least once, each send carrying a
// deterministic provider idempotency key.
//
//	q, _ := notify.New(&notify.Options{Client: rdb, MaxDelay: time.Minute, MaxItems: 50})
//	q.Enqueue(ctx, notify.Notification{User: "42", Channel: notify.Email, DedupKey: "booking:7:confirmed", Payload: p})
//	c, _ := notify.NewConsumer(q, &notify.ConsumerOptions{Sender: mySender})
//	go c.Run(ctx)
//
// # Layout in Redis
//
// One stream per user, <ns>:{<user tag>}:s, holds the user's notifications
// of every channel; the user's dedup markers and lock share its hash tag,
// so on Cluster a user is one slot and every script touches one slot.
// Consumers find work through Options.Shards index shards,
// <ns>:{ix<i>}:due, sorted sets of user ids scored by when the user's next
// digest is due. Why not one stream per shard: a digest must hold every
// notification of its window, and a consumer reading a shared stream
// would see one user's notifications interleaved with thousands of
// others', kept pending for the whole window. Why not SCAN: it does not
// scale and is not ordered by due time. The index is written after the
// stream (two slots, so two commands); a [Consumer] updates the index only if
// no enqueue wrote it since its claim, and counts its pending entries
// first (a lost reply can hide some), so no interleaving strands a
// notification (see [Consumer]).
//
// # Digests
//
// A digest starts at the oldest unsent notification of a user and channel
// (t0) and holds those queued before t0+MaxDelay, at most MaxItems; it is
// sent when full or when Redis's clock passes t0+MaxDelay. Unlike asynq's
// group aggregation there is no grace period renewed by each enqueue: the
// rule depends only on the stream's content, so a digest re-sent after a
// crash holds the same entries and its [ProviderKey] (SHA-256 of user,
// channel and entry ids) is the same: a provider that honours idempotency
// keys absorbs it. 1,000 notifications for one user and channel within one
// window make ceil(1000/MaxItems) digests: 10 with MaxItems 100, 1 with
// MaxItems 1,000 (TestConsumer_DigestCount).
//
// # Delivery
//
// Consumers form the group "notify" on every stream. A consumer works on a
// user under the user's lock (lease ConsumerOptions.Lease): it XAUTOCLAIMs
// what is pending (a crashed consumer's entries, once its lease expired),
// reads the new entries (XREADGROUP), sends the ready digests and
// acknowledges each (XACK + XDEL) only after its Sender accepted it.
// Delivery is at least once; a duplicate send is the same digest with the
// same key (TestConsumer_StoppedMidBatch: every notification delivered,
// none under two keys, the one digest sent twice absorbed;
// TestConsumer_KilledMidBatch: the same with a consumer process SIGKILLed
// inside a send). A Sender error leaves the digest queued; it is retried
// after RetryDelay.
//
// # Quiet hours
//
// With ConsumerOptions.Preferences set, a consumer reads the user's
// [Preferences] (time zone, quiet hours, the channels they hold) when a
// digest is ready, through a tier cache ([CachedPreferences]). A digest
// ready inside the quiet hours stays pending and the user is due again
// when they end, on the user's wall clock (EventHeld). Unreadable
// preferences hold the digest for RetryDelay rather than risk a message
// in the middle of the night; preferences that cannot be applied (an
// unknown time zone) are ignored, and RunOnce's error says so
// (TestConsumer_QuietHours, TestConsumer_PreferencesUnreadable,
// TestConsumer_PreferencesInvalid).
//
// # Redis unreachable
//
// [Queue.Enqueue] buffers up to Options.MaxBuffered notifications in
// process memory (in order, counted as EventBuffered) and refuses past it
// with an error wrapping [ErrBufferFull] and [ErrUnavailable]
// (EventRefused). Buffered notifications are written by the next Enqueue
// that reaches Redis, [Queue.Flush], [Queue.Run] or [Queue.Close], each
// with a dedup key so a flush retried after a timeout never queues twice.
// A buffer lives in process memory: for "acknowledged means it survives a
// crash", enqueue through an [Outbox] or set Options.NoBuffer and retry.
// Consumers retry after PollInterval; nothing is acknowledged without
// Redis.
//
// # Transactional enqueue
//
// [Outbox.Add] inserts the notification in the caller's database
// transaction (*sql.Tx); [Outbox.Run] relays committed rows to the streams
// and deletes them. A rolled-back booking queues nothing; a committed one
// is queued even if the process dies between commit and relay, because the
// row stays until a relay has queued it (dedup key "outbox:<id>", so a
// relay that dies between enqueue and delete does not queue twice).
package notify
