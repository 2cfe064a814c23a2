// Package httplimit puts a ratelimit.Limiter in front of net/http handlers.
//
//	m := httplimit.Must(limiter, "role_changes", func(r *http.Request) (string, error) {
//		admin, ok := auth.AdminFrom(r.Context())
//		if !ok {
//			return "", errNoAdmin
//		}
//		return "admin:" + admin.ID, nil
//	})
//	mux.Handle("POST /admin/users/{id}/roles", m.Handler(changeRoles))
//
// Every response it lets through or refuses carries the fields of the
// IETF draft "RateLimit header fields for HTTP"
// (draft-ietf-httpapi-ratelimit-headers-11): RateLimit-Policy, one item
// per window of the policy and of those it includes, and RateLimit, the
// room left in each and how long until it grows, in seconds:
//
//	RateLimit-Policy: "role_changes";q=5;w=3600, "admin_all";q=100;w=600
//	RateLimit: "role_changes";r=0;t=1712, "admin_all";r=97;t=534
//
// A refused request gets 429 Too Many Requests, Retry-After (seconds) and
// an application/problem+json body of the draft's "quota-exceeded" type,
// naming the windows that refused it in "violated-policies". While Redis
// cannot be reached, a policy that fails closed is answered 503 Service
// Unavailable with the draft's "temporary-reduced-capacity" type, since
// the client is not at fault; fail-open and fail-closed answers carry no
// RateLimit field (nothing is known), and a local-limiter answer carries
// the local share.
//
// The actor comes from a function the application supplies (an
// authenticated user or admin id, an API key, an address); the Limiter
// hashes it before it reaches Redis or telemetry, and no field carries it
// (the draft's "pk" partition key is never sent).
package httplimit
