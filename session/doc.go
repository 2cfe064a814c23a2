// Package session keeps web sessions in Redis and serves the read every
// request makes from process memory, with every revoke, renewal and field
// change reaching every instance through the invalidation bus.
//
//	m, err := session.New(&session.Options{
//		Client:      rdb,   // go-redis UniversalClient: single, Sentinel or Cluster
//		Invalidator: bus,   // an *invalidate.Bus, running (bus.Run)
//		Secret:      secret, // the same on every instance
//	})
//	h := session.NewHTTP(m, nil)  // cookie "id": HttpOnly, Secure, SameSite=Lax
//	mux.Handle("/", h.Handler(app)) // session.FromContext(r.Context()) in app
//	r, err = h.Login(w, r, user, map[string]string{"role": "client"})
//	r, err = h.Renew(w, r)          // on every privilege change
//	n, err := m.RevokeAll(ctx, user) // "log out everywhere"
//
// # Tokens and keys
//
// A token is "<user tag>:<ref>.<secret>": the user tag is a keyed hash of
// the user (HMAC-SHA256 under Options.Secret, 96 bits), the ref 128 bits
// and the secret 256 bits from crypto/rand. The ref is the session's
// public name: Redis stores the session under it, and it is all the bus,
// the user's session list, the [Observer] and telemetry carry. The secret
// is what authenticates, and it never leaves the process: Redis keeps
// only HMAC-SHA256(Secret, token), which every write checks in its
// script (OWASP: log a salted hash of the id, never the id). The user tag
// is the hash tag of every key of the user:
//
//	<namespace>:{u:<user tag>}:s:<ref>   the session: a HASH, one field per value
//	<namespace>:{u:<user tag>}:i         the user's index: ref -> device, address, created, last seen, expiry
//
// so every operation on a user's sessions (create, read, touch, update,
// renew, list, end one, all, or all but the current one) is one Lua script
// on one Cluster slot, atomic, with every key it touches named in KEYS.
// The index is the authority: a session is live only while its ref is in
// its user's index, so ending sessions is a change of the index, whatever
// the caller could name.
//
// # Timeouts
//
// Every script reads the time from Redis (TIME): timeouts run on Redis's
// clock. A session ends [Options.IdleTimeout] (default 30 minutes) after
// its last recorded activity, or [Options.AbsoluteTimeout] (default 12
// hours) after it was created, whichever comes first; Renew moves the
// token, not the deadlines. The idle deadline is the key's TTL
// (PEXPIREAT, set in the script that records activity), so Redis forgets
// an idle session by itself.
//
// Activity is recorded at touch granularity: a request writes last-seen
// (and moves the idle deadline) only if Options.TouchFraction of the idle
// window (default a tenth: 3 minutes) has passed since the last record, on
// Redis's clock, whichever instance wrote it; the write is a few fields
// (HSET), never the session. A session can therefore end up to that much
// before IdleTimeout after its last request, never after it. Other stores
// with an idle timeout rewrite the whole session on every request
// (alexedwards/scs #32, #251).
//
// # Two tiers
//
// A session read is [Manager.Get]: a tier.Cache in front of Redis answers
// from process memory when this instance holds the session (no round
// trip, no allocation), and reads the session's HASH (one script, one
// round trip) when it does not. "<user tag>:<ref>" is the L1 key, so a
// read finds the session without a hash; the first read of an L1 copy
// checks the token's HMAC against the stored one and keeps the secret in
// the copy, and the reads after compare secrets in constant time (no
// HMAC per request). Every change (Update, Renew, Revoke, RevokeAll,
// RevokeOthers, and a session found gone) drops the session from this
// instance's L1 at once and from every other instance's through the bus,
// after Redis has changed; tier fences a read that overlaps it, so no
// instance serves a session read before a revoke once the bus delivered.
// While an instance's subscription is down or silent, its cache serves
// no entry older than the bus's StaleBound (invalidate.Options), so a
// revoked session stops working there within about StaleBound (plus the
// bus's DeadAfter to notice a silent link) even if the message is lost.
// L1 copies are read again after Options.L1TTL in any case.
//
// # When Redis is unreachable
//
// Policy: serve from L1 within the bound, refuse the rest. A session in
// L1 is served (its activity not recorded: Stats.TouchSkipped) until its
// own deadlines, L1TTL, or, since the bus goes silent with Redis,
// StaleBound after it was read; then reads fail closed with
// [ErrUnavailable] (the HTTP handler answers 503). Writes (Create, Update,
// Renew, Revoke...) are refused with [ErrUnavailable]. A circuit breaker
// spares callers the wait after Options.BreakerFailures failures. Every
// fallback is counted ([Manager.Stats]) and reported to the Observer
// ([EventFallback]). Redis without persistence forgets its sessions when
// it restarts: users log in again.
//
// # Concurrent changes
//
// [Manager.Update] sets and deletes named fields (HSET, HDEL) in one
// script: two requests that change different fields both land (a
// whole-session write loses one of them: connect-redis #75, aspnet/Session
// #72). Update.IfVersion makes a change conditional on the session's
// version for fields that must not race.
//
// # Monitoring
//
// The [Observer] hears of creations, renewals, revocations, a login from
// a device none of the user's other live sessions has ([EventNewDevice]),
// and a session used from a new address ([EventNewIP]); the user's session
// list ([Manager.List]) shows device, address, created and last seen.
//
// # What it does not do
//
// Anonymous (pre-login) sessions: a session belongs to a user. A Manager
// is not an scs or gorilla/sessions store: scs's Store commits one opaque
// blob per token with no user (no index, no field updates, tokens scs
// draws itself), and gorilla/sessions' Store works on *http.Request and
// its own Session type, so either adapter would give up what this package
// is for, or make it import them. For scs users who want the reads from
// process memory and the revocation through the bus without moving to
// this package, [github.com/tiercache/tiercache/session/scsstore] is an
// scs Store over a two-tier cache (structural: it does not import scs).
//
// # Telemetry
//
// The [Observer] and [Event] are defined in package sessionevent (and are
// the same types here), which imports only the standard library, so the
// otel package's session observer (tierotel.NewSessionObserver) does not
// import this package or go-redis. The L1 cache takes any tier.Observer
// (Options.CacheObserver), such as tierotel.New's.
package session
