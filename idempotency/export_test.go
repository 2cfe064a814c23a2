package idempotency

import "time"

// SetClockOffset moves the clock s's scripts read forward by d (Redis TIME
// plus d), so that tests can expire leases without waiting for them.
func SetClockOffset(s *Store, d time.Duration) { s.offsetMS.Store(d.Milliseconds()) }

// Owner returns a's owner token.
func Owner(a *Attempt) string { return a.owner }

// CompleteScriptHash and BeginScriptHash name the scripts' EVALSHA, for
// hooks that fail one of them.
func CompleteScriptHash() string { return completeScript.Hash() }

// BeginScriptHash: see CompleteScriptHash.
func BeginScriptHash() string { return beginScript.Hash() }
