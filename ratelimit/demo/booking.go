package demo

import (
	"time"

	"github.com/tiercache/tiercache/ratelimit"
)

// Endpoint is one rate-limited endpoint of the booking application.
type Endpoint struct {
	// Name is the endpoint as the booking plan names it.
	Name string
	// Route is its HTTP route.
	Route string
	// Actor says who the quota is per ("user", "admin").
	Actor string
	// Policy is its policy; its Include lists the shared admin quota.
	Policy ratelimit.Policy
	// Why says why this quota, algorithm and outage mode.
	Why string
}

// The policies' names.
const (
	PolicyIdentityVerification = "identity_verification"
	PolicyPaymentIntents       = "payment_intents"
	PolicyTransferApproval     = "transfer_approval"
	PolicyRoleChanges          = "role_changes"
	PolicyForceVerification    = "force_verification"
	PolicyExpertVerification   = "expert_verification"
	PolicyAdminAll             = "admin_all"
	PolicyProfile              = "profile"
)

// Endpoints returns the eight rate-limited endpoints of the booking plan,
// for an application that runs instances instances against one Redis
// (each instance's local share during an outage is 1/instances of each
// quota, so the fleet stays within it). The first three quotas were left
// to us; Why says how they were chosen.
func Endpoints(instances int) []Endpoint {
	share := 1 / float64(max(1, instances))
	log := ratelimit.SlidingLog
	admin := []string{PolicyAdminAll}
	return []Endpoint{
		{
			Name: "identity verification", Route: "POST /me/identity-verifications", Actor: "user",
			Policy: ratelimit.Policy{Name: PolicyIdentityVerification, Algorithm: log,
				Limits: []ratelimit.Limit{ratelimit.Per(5, time.Hour), ratelimit.Per(10, 24*time.Hour)},
				Outage: ratelimit.Local, LocalShare: share},
			Why: "each attempt calls the paid identity provider and is how stolen documents get tried: " +
				"5 an hour leaves room for a blurred photo or two, 10 a day caps the cost; " +
				"exact (sliding log); local share in an outage, since a user who cannot verify loses a booking",
		},
		{
			Name: "payment intent creation", Route: "POST /bookings/{id}/payment-intents", Actor: "user",
			Policy: ratelimit.Policy{Name: PolicyPaymentIntents, Algorithm: ratelimit.GCRA,
				Limits: []ratelimit.Limit{{N: 10, Per: 10 * time.Minute, Burst: 5}},
				Outage: ratelimit.Local, LocalShare: share},
			Why: "card testing creates intents in bulk; a real checkout needs one, a few on retries: " +
				"GCRA smooths to one a minute after a burst of 5, which no checkout notices and card testing does; " +
				"local share in an outage, since refusing payments costs bookings",
		},
		{
			Name: "admin transfer approval", Route: "POST /admin/transfers/{id}/approval", Actor: "admin",
			Policy: ratelimit.Policy{Name: PolicyTransferApproval, Algorithm: log,
				Limits:  []ratelimit.Limit{ratelimit.Per(10, time.Hour), ratelimit.Per(50, 24*time.Hour)},
				Include: admin, Outage: ratelimit.FailClosed},
			Why: "approvals move money to experts: a stolen admin session must not drain payouts; " +
				"10 an hour and 50 a day is above a day's payout run and far below a drain; " +
				"exact, and fails closed (a delayed approval costs less than a wrong one)",
		},
		{
			Name: "user role management", Route: "PUT /admin/users/{id}/roles", Actor: "admin",
			Policy: ratelimit.Policy{Name: PolicyRoleChanges, Algorithm: log,
				Limits: []ratelimit.Limit{ratelimit.Per(5, time.Hour)}, Include: admin, Outage: ratelimit.FailClosed},
			Why: "the plan's quota; a security quota, so exact in every rolling hour, and fails closed",
		},
		{
			Name: "admin force verification", Route: "POST /admin/users/{id}/force-verification", Actor: "admin",
			Policy: ratelimit.Policy{Name: PolicyForceVerification, Algorithm: log,
				Limits: []ratelimit.Limit{ratelimit.Per(10, 24*time.Hour)}, Include: admin, Outage: ratelimit.FailClosed},
			Why: "the plan's quota (a rolling day); exact, and fails closed",
		},
		{
			Name: "expert verification", Route: "POST /admin/experts/{id}/verification", Actor: "admin",
			Policy: ratelimit.Policy{Name: PolicyExpertVerification, Algorithm: log,
				Limits: []ratelimit.Limit{ratelimit.Per(20, time.Hour)}, Include: admin,
				Outage: ratelimit.Local, LocalShare: share},
			Why: "the plan's quota; exact, local share in an outage (reviewing experts is routine work)",
		},
		{
			Name: "all admin endpoints", Route: "/admin/*", Actor: "admin",
			Policy: ratelimit.Policy{Name: PolicyAdminAll, Algorithm: ratelimit.SlidingWindow,
				Limits: []ratelimit.Limit{ratelimit.Per(100, 10*time.Minute)}, Outage: ratelimit.Local, LocalShare: share},
			Why: "the plan's quota; a capacity quota, so the constant-memory sliding-window counter " +
				"(under 2x only if the previous 10 minutes' traffic came in its last moments); " +
				"every admin endpoint's policy includes it, checked in the same step",
		},
		{
			Name: "user profile APIs", Route: "/me/profile*", Actor: "user",
			Policy: ratelimit.Policy{Name: PolicyProfile, Algorithm: ratelimit.SlidingWindow,
				Limits: []ratelimit.Limit{ratelimit.Per(30, 5*time.Minute)}, Outage: ratelimit.Local, LocalShare: share},
			Why: "the plan's quota; capacity, so the sliding-window counter; local share in an outage",
		},
	}
}

// Policies returns the policies of [Endpoints], ready for
// ratelimit.Options.Policies.
func Policies(instances int) []ratelimit.Policy {
	var ps []ratelimit.Policy
	for _, e := range Endpoints(instances) {
		ps = append(ps, e.Policy)
	}
	return ps
}
