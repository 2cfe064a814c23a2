// Package idempotency makes a request run once however often it is
// retried, across every instance that shares a Redis: a retried "book and
// pay" is booked and charged once, and every retry gets the first answer.
// Form double-submit protection is the same primitive with a short
// retention and the form's token as the key ([FormRoute]).
//
//	store, err := idempotency.New(ctx, &idempotency.Options{Client: rdb})
//	mw, err := idempotency.NewMiddleware(store, &idempotency.RouteOptions{
//		Scope: func(r *http.Request) (string, error) { return userID(r), nil },
//	})
//	mux.Handle("POST /bookings", mw.Wrap(bookAndPay))
//
// Inside the handler, [FromContext] gives the [Attempt]: its Fence to write
// with the booking ("UPDATE ... WHERE fence < $1"), its DerivedKey to send
// to the payment provider as that provider's idempotency key, and
// Checkpoint to record how far it got. [Store.Do] runs any function the
// same way, outside HTTP.
//
// # Records
//
// One record per (scope, key), a Redis hash in a hash slot of its own
// ("<namespace>:{<hash>}"), so it runs on one Redis, Sentinel or Cluster.
// The key and the scope reach Redis, logs and telemetry only as a hash
// (HMAC-SHA256 with Options.Secret). A record is in flight (an attempt
// owns it: owner token, fence, lease deadline on Redis's clock, request
// fingerprint, recovery point), completed (status, headers, body, in the
// cache's codec envelope), or failed (the last attempt ended without a
// result; the next request runs at once). Every transition is one Lua
// script that reads and checks the whole record and decides on Redis's
// clock (TIME), and every key gets its TTL in the script that writes it:
// nothing reads, decides, then writes. So the two races of AWS Powertools
// cannot happen here: a live in-progress record reclaimed as an orphan
// (powertools-lambda-python #8386; every in-flight record has a lease
// deadline) and a recovery that overwrites a completed result with an
// unconditional SET (powertools-lambda-typescript #5714; the takeover is
// decided in the script, on the record as it is then, and a completed
// record is never written again). TestStore_StaleOwnerCannotOverwrite plays
// both, deterministically.
//
// # Leases, fences and takeovers
//
// An attempt holds a lease (Options.Lease, 15 s) that the middleware
// extends every Options.Heartbeat (5 s). A request that finds the lease
// expired (the owner's process died, hung, or lost Redis for longer than
// the lease) takes the record over with a larger fence: Redis's clock in
// milliseconds, or the previous fence plus one. A heartbeat of the old
// owner then fails with [ErrLeaseLost] and the middleware cancels its
// handler's context with that cause; its Complete is refused. Fences stop
// the old owner's late writes where they land: in the database, with a
// fenced write; at a payment provider, with [Attempt.DerivedKey], the same
// key for every attempt of a record, so that the provider returns the
// charge the old owner made instead of making a second one (brandur's
// "derived key for the downstream call"). [Attempt.RecoveryPoint] tells
// the new attempt the last [Attempt.Checkpoint] of the old one (brandur's
// recovery points).
//
// An attempt may complete after its lease ran out as long as nobody took
// it over: until then no one else ran.
//
// # Crash points: what a retry gets
//
//	the owner dies or is cancelled ...      process dies                     request context cancelled
//	before the work                         409 until the lease ends, then   the attempt fails: the retry
//	                                        the retry runs (taken over)      runs at once
//	during the work                         409, then the retry runs with    the retry runs at once with
//	                                        RecoveryPoint of the last        the last RecoveryPoint
//	                                        Checkpoint
//	after the work, before the record       409, then the retry runs and     the handler's answer is
//	completes                               must find the work done:         recorded (on a context the
//	                                        RecoveryPoint, DerivedKey,       cancellation does not reach)
//	                                        fenced writes                    and replayed
//	after the record completed              the replay, byte for byte        the replay
//
// TestCrashMatrix_ProcessDies kills a child process at each point (os.Exit
// inside the handler), TestCrashMatrix_ContextCancelled cancels the request,
// and both check one charge and one booking. A handler that panics fails
// its attempt on the way out; the retry runs at once.
//
// # HTTP
//
// The middleware follows the IETF draft "The Idempotency-Key HTTP Header
// Field", answers with RFC 9457 problem details (application/problem+json,
// linked to RouteOptions.DocsURL if set):
//
//	status   when
//	400      no Idempotency-Key on a route that requires one (the default;
//	         RouteOptions.Optional lets such requests through unprotected),
//	         a malformed key, or two Idempotency-Key fields
//	409      the first request with the key is still running; Retry-After
//	         is what is left of its lease
//	413      the body is larger than RouteOptions.MaxRequestBytes (1 MiB)
//	422      the key was first used with another payload (method, path,
//	         query and body by default)
//	500      the record is unreadable: nothing is run on a guess
//	503      Redis is unavailable; Retry-After (1 s). The request was not
//	         run. RouteOptions.FailOpen runs it unprotected instead.
//	replay   the first response: status, headers (but Set-Cookie, Date and
//	         hop-by-hop ones) and body, byte for byte, with
//	         Idempotent-Replayed: true
//
// Every response of a protected route carries Idempotency-Retention: the
// seconds a completed request is kept and replayed (Options.Retention, 24
// hours as at Stripe): the expiry policy the draft asks servers to publish.
// After it the key is new again.
//
// The first response is sent once its record is written (or, with Redis
// unreachable, queued), so that a client rarely sees an answer a retry
// would not get. 5xx responses (and 429)
// are not replayed by default: they are sent, not recorded, and the
// attempt fails, so the retry runs again (see
// RouteOptions.ReplayServerErrors for why, and to replay them as Stripe
// does). A response larger than Options.MaxResultBytes is replaced by a
// recorded 500 problem: the work ran and must not run again.
//
// # Failure modes
//
//	what fails                              what happens
//	Redis unreachable when a request comes  503, the handler does not run (fail closed); FailOpen routes run
//	                                        unprotected (EventFailOpen). After 5 failures in a row the
//	                                        breaker answers at once, one probe at a time (Options.Breaker).
//	Redis unreachable while it runs         the handler goes on; heartbeats fail. If the outage outlasts the
//	                                        lease, a retry after it may take over: fences and derived keys
//	                                        keep the second run from doing the work twice.
//	Redis unreachable when it completes     the client gets the handler's answer; the result is queued and
//	                                        written by a background completer (Options.CompleteDeadline,
//	                                        10 min; EventCompleteDeferred), woken by the first call that
//	                                        reaches Redis again. A retry on the same instance writes it
//	                                        before anything else, so it gets the replay even if the lease
//	                                        ran out; a retry on another instance in the moment before the
//	                                        completer writes may take the request over (fences, derived key).
//	Redis restarted empty                   a running attempt writes its record again at its next heartbeat
//	                                        (EventRecreated), and a queued completion writes it completed;
//	                                        records of finished requests are lost: their retries run again.
//	                                        Run Redis with appendonly yes to keep them.
//	failover to a replica                   replication is asynchronous: the last writes may be lost, as in a
//	                                        restart, for those records.
//	eviction                                New refuses a Redis whose maxmemory-policy is not noeviction
//	                                        (on every master); Options.AllowEvictingRedis overrides it, and
//	                                        says why it is dangerous.
//	the owner dies                          409 until its lease ends (at most Options.Lease), then a takeover.
//	the owner pauses longer than the lease  a takeover; when it wakes, its heartbeat finds ErrLeaseLost and its
//	                                        handler's context is cancelled; its Complete and fenced writes
//	                                        are refused.
//
// TestOutage_RestartWhileRunning and TestOutage_CompleteAfterRecovery kill
// Redis during a request, TestOutage_PausedAtCompletion stops it until the
// lease is over, and each checks that the handler runs once.
//
// # L1
//
// A completed record never changes, so each Store keeps a copy of the ones
// it wrote or read (Options.L1MaxBytes, 16 MiB, until the record's TTL):
// a replay on the same instance costs no round trip, and a mismatched
// payload is answered 422 from it too. In-flight records are never copied.
package idempotency
