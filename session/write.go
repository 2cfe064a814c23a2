package session

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Create starts a session for user, from client, with the given fields,
// and returns its token (to be sent to the client, for example in a cookie
// by [HTTP.Login]). The session ends IdleTimeout after its last recorded
// activity or AbsoluteTimeout after now, whichever comes first (Redis's
// clock). If the user already has MaxPerUser live sessions, the least
// recently seen ends. A client.Device that none of the user's other live
// sessions has is reported as [EventNewDevice].
//
// NOTE: call it on every login and privilege change from an anonymous
// state, and end the session the request came with (OWASP: a new id on
// every privilege change, the old one destroyed); [HTTP.Login] does both.
// A write while Redis is unreachable fails with [ErrUnavailable].
func (m *Manager) Create(ctx context.Context, user string, client Client, fields map[string]string) (string, error) {
	if m.closed.Load() {
		return "", ErrClosed
	}
	if user == "" || len(user) > maxUserBytes {
		return "", fmt.Errorf("%w: %d bytes", ErrInvalidUser, len(user))
	}
	if err := m.checkFields(fields, nil); err != nil {
		return "", err
	}
	client.Device = clip(client.Device)
	client.IP = clip(client.IP)
	tag := m.h.userTag(user)
	token := newToken(tag)
	_, ref, _ := splitKey(keyOf(token))
	args := make([]any, 0, 9+2*len(fields))
	args = append(args, ref, user, m.idleUS, m.absUS, client.Device, client.IP, m.o.MaxPerUser, "_h", m.h.tokenHash(token))
	for _, k := range slices.Sorted(maps.Keys(fields)) {
		args = append(args, k, fields[k])
	}
	var v []any
	if t0, t1, err := m.call(ctx, func(ctx context.Context) (err error) {
		v, err = createScript.Run(ctx, m.rdb, []string{m.k.session(tag, ref), m.k.index(tag)}, args...).Slice()
		return err
	}); err != nil {
		return "", m.writeError(ctx, "create", err, time.Duration(t1-t0))
	}
	if len(v) < 4 {
		return "", fmt.Errorf("%w: create: short reply", ErrUnavailable)
	}
	newDevice, _ := replyInt(v, 1)
	others, _ := replyInt(v, 2)
	m.st.created.Add(1)
	if !m.noObs {
		m.o.Observer.Event(ctx, Event{Kind: EventCreated, User: user, UserTag: tag, Ref: ref, Device: client.Device, IP: client.IP})
	}
	if newDevice == 1 && others > 0 && client.Device != "" {
		m.st.newDevices.Add(1)
		if !m.noObs {
			m.o.Observer.Event(ctx, Event{Kind: EventNewDevice, User: user, UserTag: tag, Ref: ref, Device: client.Device, IP: client.IP})
		}
	}
	if evicted := replyStrings(v[3]); len(evicted) > 0 {
		// Ended already (they left the index); their keys go too.
		m.deleteKeys(ctx, tag, evicted)
		m.st.revoked.Add(uint64(len(evicted)))
		if !m.noObs {
			m.o.Observer.Event(ctx, Event{Kind: EventRevoked, User: user, UserTag: tag, Count: len(evicted), Reason: "evicted"})
		}
		if err := m.drop(ctx, l1Keys(tag, evicted)...); err != nil {
			return token, err
		}
	}
	return token, nil
}

// Update is a change to a session's fields, applied by [Manager.Update]
// as one atomic step.
type Update struct {
	// Set sets fields.
	Set map[string]string
	// Delete removes fields.
	Delete []string
	// IfVersion, when not 0, applies the change only if the session's
	// version (Session.Version) is still this one; otherwise Update fails
	// with [ErrConflict]. Use it for fields that must not race (a
	// read-modify-write); changes of different fields without it never
	// overwrite each other.
	IfVersion uint64
}

// Update changes the fields of token's session in Redis (HSET and HDEL of
// the fields named, nothing else: concurrent updates of other fields
// both land) and makes every instance read the session again. It returns
// the session's new version. It does not count as activity and never
// extends the session.
func (m *Manager) Update(ctx context.Context, token string, u Update) (uint64, error) {
	if m.closed.Load() {
		return 0, ErrClosed
	}
	key, tag, ref, hash, err := m.auth(token)
	if err != nil {
		return 0, err
	}
	if err := m.checkFields(u.Set, u.Delete); err != nil {
		return 0, err
	}
	if len(u.Set) == 0 && len(u.Delete) == 0 {
		return 0, fmt.Errorf("%w: empty update", ErrInvalidField)
	}
	args := make([]any, 0, 4+2*len(u.Set)+len(u.Delete))
	args = append(args, ref, hash, strconv.FormatUint(u.IfVersion, 10), 2*len(u.Set))
	for _, k := range slices.Sorted(maps.Keys(u.Set)) {
		args = append(args, k, u.Set[k])
	}
	for _, k := range u.Delete {
		args = append(args, k)
	}
	var v []any
	if t0, t1, err := m.call(ctx, func(ctx context.Context) (err error) {
		v, err = updateScript.Run(ctx, m.rdb, []string{m.k.session(tag, ref), m.k.index(tag)}, args...).Slice()
		return err
	}); err != nil {
		m.dropIfUnknown(ctx, err, key)
		return 0, m.writeError(ctx, "update", err, time.Duration(t1-t0))
	}
	status, _ := replyInt(v, 0)
	switch status {
	case 0:
		m.dropAnyway(ctx, key)
		return 0, ErrNotFound
	case -1:
		cur, _ := replyInt(v, 1)
		m.st.conflicts.Add(1)
		return uint64(cur), fmt.Errorf("%w: version %d, expected %d", ErrConflict, cur, u.IfVersion)
	}
	ver, _ := replyInt(v, 1)
	m.st.updated.Add(1)
	return uint64(ver), m.drop(ctx, key)
}

// Renew moves token's session to a new token, atomically: every field,
// the activity record and the deadlines move with it (the absolute
// timeout still counts from creation), and the old token stops working on
// every instance (here at once, elsewhere when the bus delivers). Call it
// on every privilege change (a role change, a password change, a step-up
// authentication); [HTTP.Renew] also sets the cookie.
func (m *Manager) Renew(ctx context.Context, token string) (string, error) {
	if m.closed.Load() {
		return "", ErrClosed
	}
	key, tag, ref, hash, err := m.auth(token)
	if err != nil {
		return "", err
	}
	next := newToken(tag)
	_, nextRef, _ := splitKey(keyOf(next))
	var n int64
	if t0, t1, err := m.call(ctx, func(ctx context.Context) (err error) {
		n, err = renewScript.Run(ctx, m.rdb, []string{m.k.session(tag, ref), m.k.session(tag, nextRef), m.k.index(tag)},
			ref, nextRef, hash, m.h.tokenHash(next)).Int64()
		return err
	}); err != nil {
		m.dropIfUnknown(ctx, err, key)
		return "", m.writeError(ctx, "renew", err, time.Duration(t1-t0))
	}
	if n == 0 {
		m.dropAnyway(ctx, key)
		return "", ErrNotFound
	}
	m.st.renewed.Add(1)
	if !m.noObs {
		m.o.Observer.Event(ctx, Event{Kind: EventRenewed, UserTag: tag, Ref: nextRef, OldRef: ref})
	}
	return next, m.drop(ctx, key)
}

// Revoke ends token's session on every instance (logout). Ending a session
// that does not exist is not an error.
func (m *Manager) Revoke(ctx context.Context, token string) error {
	if m.closed.Load() {
		return ErrClosed
	}
	_, tag, ref, hash, err := m.auth(token)
	if err != nil {
		return nil
	}
	_, err = m.revoke(ctx, tag, "one", "", hash, []string{ref}, "revoke")
	if errors.Is(err, ErrNotFound) {
		return nil // a secret that is not the session's
	}
	return err
}

// RevokeRef ends one of user's sessions, named by its ref (as in
// [Manager.List]): "log out that device".
func (m *Manager) RevokeRef(ctx context.Context, user, ref string) error {
	if m.closed.Load() {
		return ErrClosed
	}
	if len(ref) != refLen {
		return nil
	}
	_, err := m.revoke(ctx, m.h.userTag(user), "one", "", "", []string{ref}, "revoke")
	return err
}

// RevokeAll ends every session of user, in one atomic step in Redis, and
// on every instance: here at once, on the others when the bus delivers
// (and, if their subscription is down, within the bus's StaleBound). It
// returns the number of sessions ended.
func (m *Manager) RevokeAll(ctx context.Context, user string) (int, error) {
	if m.closed.Load() {
		return 0, ErrClosed
	}
	return m.revoke(ctx, m.h.userTag(user), "all", "", "", nil, "revoke_all")
}

// RevokeOthers ends every session of token's user except token's own
// ("log out everywhere else"), in one atomic step. It fails with
// [ErrNotFound] if token's session does not exist.
func (m *Manager) RevokeOthers(ctx context.Context, token string) (int, error) {
	if m.closed.Load() {
		return 0, ErrClosed
	}
	_, tag, ref, hash, err := m.auth(token)
	if err != nil {
		return 0, err
	}
	return m.revoke(ctx, tag, "others", ref, hash, nil, "revoke_others")
}

// revoke runs revokeScript. For "all" and "others" it first reads the
// index to name the session keys; a session created in between is ended
// all the same (it leaves the index), and its key is deleted afterwards.
// A hash, when given, must be that of the token of the session named by
// keep (mode "others") or by refs[0] (mode "one"), or nothing ends
// ([ErrNotFound]).
func (m *Manager) revoke(ctx context.Context, tag, mode, keep, hash string, refs []string, reason string) (int, error) {
	idx := m.k.index(tag)
	if mode != "one" {
		if t0, t1, err := m.call(ctx, func(ctx context.Context) (err error) {
			refs, err = m.rdb.HKeys(ctx, idx).Result()
			return err
		}); err != nil {
			return 0, m.writeError(ctx, reason, err, time.Duration(t1-t0))
		}
	}
	authKey := idx // not read without a hash
	switch {
	case hash != "" && mode == "others":
		authKey = m.k.session(tag, keep)
	case hash != "" && len(refs) > 0:
		authKey = m.k.session(tag, refs[0])
	}
	ks := make([]string, 0, 2+len(refs))
	ks = append(ks, idx, authKey)
	args := make([]any, 0, 3+len(refs))
	args = append(args, mode, keep, hash)
	for _, r := range refs {
		ks = append(ks, m.k.session(tag, r))
		args = append(args, r)
	}
	// The sessions this call names: dropped from L1 if the outcome is
	// unknown or nothing was ended (the retry of a write whose reply was
	// lost); the sessions it ended are dropped below.
	named := l1Keys(tag, slices.DeleteFunc(slices.Clone(refs), func(r string) bool { return r == keep }))
	var v []any
	if t0, t1, err := m.call(ctx, func(ctx context.Context) (err error) {
		v, err = revokeScript.Run(ctx, m.rdb, ks, args...).Slice()
		return err
	}); err != nil {
		m.dropIfUnknown(ctx, err, named...)
		return 0, m.writeError(ctx, reason, err, time.Duration(t1-t0))
	}
	if st, err := replyInt(v, 0); err == nil && st == -1 {
		m.dropAnyway(ctx, named...)
		return 0, ErrNotFound
	}
	if len(v) < 2 {
		m.dropAnyway(ctx, named...)
		return 0, fmt.Errorf("%w: %s: short reply", ErrUnavailable, reason)
	}
	gone := replyStrings(v[0])
	m.deleteKeys(ctx, tag, replyStrings(v[1]))
	if len(gone) == 0 {
		m.dropAnyway(ctx, named...)
		return 0, nil
	}
	m.st.revoked.Add(uint64(len(gone)))
	if !m.noObs {
		e := Event{Kind: EventRevoked, UserTag: tag, Count: len(gone), Reason: reason}
		if len(gone) == 1 {
			e.Ref = gone[0]
		}
		m.o.Observer.Event(ctx, e)
	}
	return len(gone), m.drop(ctx, l1Keys(tag, gone)...)
}

// deleteKeys deletes the keys of sessions that already left their index
// (so they are ended whatever happens here): best effort, one DEL.
func (m *Manager) deleteKeys(ctx context.Context, tag string, refs []string) {
	if len(refs) == 0 {
		return
	}
	ks := make([]string, len(refs))
	for i, r := range refs {
		ks[i] = m.k.session(tag, r)
	}
	_, _, _ = m.call(ctx, func(ctx context.Context) error { return m.rdb.Del(ctx, ks...).Err() })
}

// Info describes one of a user's sessions, as [Manager.List] returns it.
type Info struct {
	// Ref names the session (see Session.Ref); give it to RevokeRef.
	Ref string
	// Device and IP as last recorded.
	Device, IP string
	// Created and LastSeen (at touch granularity), and when the session
	// ends if it sees no more activity (Redis's clock).
	Created, LastSeen, Expires time.Time
}

// List returns user's live sessions, most recently seen first: the
// "your devices" page. Mark the current one by comparing Ref with
// [Manager.Ref] of the request's token.
func (m *Manager) List(ctx context.Context, user string) ([]Info, error) {
	if m.closed.Load() {
		return nil, ErrClosed
	}
	tag := m.h.userTag(user)
	var v []any
	if t0, t1, err := m.call(ctx, func(ctx context.Context) (err error) {
		v, err = listScript.Run(ctx, m.rdb, []string{m.k.index(tag)}).Slice()
		return err
	}); err != nil {
		return nil, m.writeError(ctx, "list", err, time.Duration(t1-t0))
	}
	if len(v) < 2 {
		return nil, fmt.Errorf("%w: list: short reply", ErrUnavailable)
	}
	kv := replyStrings(v[1])
	out := make([]Info, 0, len(kv)/2)
	for i := 0; i+1 < len(kv); i += 2 {
		var e struct{ C, S, E, D, I string }
		if json.Unmarshal([]byte(kv[i+1]), &e) != nil {
			continue
		}
		out = append(out, Info{Ref: kv[i], Device: e.D, IP: e.I, Created: micros(e.C), LastSeen: micros(e.S), Expires: micros(e.E)})
	}
	slices.SortFunc(out, func(a, b Info) int { return b.LastSeen.Compare(a.LastSeen) })
	return out, nil
}

// writeError counts a failed write (or a read of the index) that took d,
// and returns the caller's error.
func (m *Manager) writeError(ctx context.Context, op string, err error, d time.Duration) error {
	if ctx.Err() != nil {
		return fmt.Errorf("session: %s: %w", op, ctx.Err())
	}
	m.st.writesRefused.Add(1)
	m.fallback(ctx, "write", err, d)
	return fmt.Errorf("session: %s: %w", op, err)
}

// checkFields validates field names and values.
func (m *Manager) checkFields(set map[string]string, del []string) error {
	check := func(k string) error {
		if k == "" || k[0] == '_' || len(k) > 256 {
			return fmt.Errorf("%w: name %q (empty, over 256 bytes, or starting with '_')", ErrInvalidField, k)
		}
		return nil
	}
	if len(set)+len(del) > 1024 {
		return fmt.Errorf("%w: more than 1024 fields in one call", ErrInvalidField)
	}
	for k, v := range set {
		if err := check(k); err != nil {
			return err
		}
		if len(v) > m.o.MaxFieldBytes {
			return fmt.Errorf("%w: %q has %d bytes, limit %d", ErrInvalidField, k, len(v), m.o.MaxFieldBytes)
		}
	}
	for _, k := range del {
		if err := check(k); err != nil {
			return err
		}
	}
	return nil
}

func l1Keys(tag string, refs []string) []string {
	out := make([]string, len(refs))
	for i, r := range refs {
		out[i] = tag + ":" + r
	}
	return out
}

func replyStrings(v any) []string {
	xs, _ := v.([]any)
	out := make([]string, 0, len(xs))
	for _, x := range xs {
		if s, ok := x.(string); ok {
			out = append(out, s)
		}
	}
	return out
}

func micros(s string) time.Time {
	n, _ := strconv.ParseInt(s, 10, 64)
	return time.UnixMicro(n)
}

// clip bounds a device label or address as stored.
func clip(s string) string {
	if len(s) <= maxClientBytes {
		return s
	}
	s = s[:maxClientBytes]
	return strings.ToValidUTF8(s, "")
}
