// Package scsstore is a session store for alexedwards/scs v2 (its Store
// and CtxStore interfaces) whose reads are served from process memory:
// scs users switch in one line and their per-request Find stops costing a
// Redis round trip.
//
//	sm := scs.New()
//	sm.Store = scsstore.Must(&scsstore.Options{Client: rdb, Invalidator: bus, Secret: secret})
//
// It is a tier.Cache of the opaque bytes scs commits: Find reads L1, then
// Redis; Commit and Delete write Redis and L1 and tell every other
// instance to drop its copy through the invalidation bus, so a logout on
// one instance is a logout everywhere within the bus's delay (StaleBound
// if the bus is down), as with package session. Tokens are stored under
// an HMAC of the token (Options.Secret): the raw token never reaches
// Redis, the bus or telemetry.
//
// The interfaces are structural: this package does not import scs (the
// root module does not depend on it). The benchmarks module checks it
// against scs itself.
//
// # What it is not
//
// It is scs's model, not package session's: one opaque blob per token
// with no user, so there is no per-user index ("log out everywhere" is
// not possible through scs), no per-field update (scs commits the whole
// blob: two requests that change different fields still overwrite each
// other), and with an IdleTimeout scs still commits on every request (one
// Redis write each: scs #32, #251). For those, use package session. It
// does not implement scs's IterableStore: All would need every key of the
// namespace, a SCAN of every Cluster node (scs #260).
//
// gorilla/sessions has no adapter: its Store interface works on
// *http.Request and *sessions.Session (New, Get, Save), so an adapter would
// have to import gorilla/sessions, and its session values are
// map[interface{}]interface{} that it encodes itself with securecookie.
package scsstore
