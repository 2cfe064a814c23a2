// Package onetime issues secrets that are used once or live briefly, on
// Redis: single-use tokens (email verification, password-reset and magic
// links), short numeric codes with an attempts limit and a lockout (SMS
// and email codes), the state and PKCE verifier of an OAuth login, and
// typed temporary data ([TempData]: multi-step form progress, upload
// sessions, onboarding wizards).
//
//	s, err := onetime.New(ctx, &onetime.Options{Client: rdb, Secret: secret})
//	tok, err := s.Mint(ctx, "reset-password", userID, time.Hour, nil)
//	// ... the link carries tok; on submission:
//	_, err = s.Consume(ctx, "reset-password", tok, userID)
//
// # Tokens
//
// A token is 256 random bits (base64url, 43 characters) for a purpose and
// a subject. Redis keeps it only as a hash, in the key, under which it
// keeps a hash of the subject and what the token carries (Mint's data)
// sealed with AES-GCM under a key derived from the token: a reader of
// Redis learns neither the token, nor the subject, nor the data. Consume
// uses GETDEL, so of any number of concurrent consumers exactly one gets
// the token (TestStore_ConcurrentConsumers: 1,000 of them); GET then DEL
// would let several through. The subject is compared in constant time
// (crypto/subtle); a token presented for another subject is burned.
//
// # Codes
//
// MintCode issues a numeric code (6 digits) for a purpose and a subject;
// Redis keeps its HMAC under Options.Secret (without a secret a reader of
// Redis could try the million codes against a plain hash in a second, so
// codes require one). ConsumeCode checks a code in one script that
// compares the hashes in constant time and counts the wrong ones: after
// Options.MaxAttempts (5) the subject is locked out of the purpose for
// Options.Lockout (15 minutes), new codes included. The count holds under
// concurrency (TestStore_CodeAttemptsUnderConcurrency).
//
// # OAuth
//
// BeginOAuth mints the state of a login at a provider, bound to the
// pre-login session, carrying a PKCE verifier (RFC 7636, S256); FinishOAuth
// consumes it on the callback and returns the verifier for the token
// request. RFC 9700 asks for both: the state, single-use and bound to the
// session, stops login CSRF; PKCE stops a stolen authorization code.
//
// # Errors and failure modes
//
//	error                 meaning
//	ErrExpiredOrUsed      expired, used, never issued or malformed (not told apart)
//	ErrWrongSubject       issued to another subject; the token is burned
//	ErrWrongCode          wrong code; *AttemptsError.Remaining attempts are left
//	ErrTooManyAttempts    locked out; *AttemptsError.RetryAfter
//	ErrUnavailable        Redis unreachable, slow or refusing, or the breaker open
//
// Nothing is held in process memory (there is no L1) and nothing is ever
// accepted without Redis: every call fails closed with [ErrUnavailable].
// A Redis restarted without persistence forgets tokens (users ask for new
// ones) and lockouts (run it with appendonly yes); New refuses a Redis
// that may evict keys, because an evicted attempt counter gives a guesser
// fresh attempts (Options.AllowEvictingRedis overrides it). A go-redis
// client that resends a command after a lost reply can burn a token or
// count an attempt twice: both err on the safe side; a resent Mint or
// TempData compare-and-set recognises its own write.
//
// Every key lives in its own hash slot and every change is one command or
// one script that sets the key's TTL, on one Redis, Sentinel or Cluster.
// Replication is asynchronous and no WAIT is run: a failover to a replica
// that had not received a Consume (or counted wrong codes) undoes it.
package onetime
