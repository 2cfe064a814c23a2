package booking

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"time"
)

// SeedOptions sizes the data set that [GenerateSeed] makes.
type SeedOptions struct {
	// Profiles is the number of profiles, with ids 1..Profiles.
	// Default: 5000.
	Profiles int
	// Experts is the number of experts, with ids 1..Experts; expert i is
	// profile i. At most Profiles. Default: 2000.
	Experts int
	// Appointments is the number of appointments, with ids
	// 1..Appointments, spread over Days days from Start; about one in ten
	// is cancelled. Default: 30000.
	Appointments int
	// Days is how many days the appointments cover. Default: 14.
	Days int
	// Start is the first day of the appointments. Default: today (UTC).
	Start time.Time
	// Seed seeds the random generator, so that a seed is reproducible.
	// Default: 1.
	Seed uint64
}

// SeedData is a generated data set, ready for a [Seeder].
type SeedData struct {
	Options      SeedOptions // with the defaults filled in
	Profiles     []Profile
	Experts      []Expert
	Appointments []Appointment
}

// Seeder is implemented by the repositories that can load a [SeedData]
// quickly (in batches, in one transaction).
type Seeder interface {
	// Seed inserts d into empty tables.
	Seed(ctx context.Context, d *SeedData) error
}

// Specialties are the specialties of seeded experts.
var Specialties = []string{
	"cardiology", "dermatology", "nutrition", "physiotherapy", "psychology",
	"career coaching", "tax advice", "family law", "immigration law",
	"mortgage advice", "language tutoring", "software architecture",
}

// GenerateSeed returns the data set that o describes (nil means the
// defaults). The same options give the same data.
func GenerateSeed(o *SeedOptions) (*SeedData, error) {
	var opts SeedOptions
	if o != nil {
		opts = *o
	}
	if opts.Profiles < 0 || opts.Experts < 0 || opts.Appointments < 0 || opts.Days < 0 {
		return nil, errors.New("booking: seed: negative size")
	}
	if opts.Profiles == 0 {
		opts.Profiles = 5000
	}
	if opts.Experts == 0 {
		opts.Experts = min(2000, opts.Profiles)
	}
	if opts.Appointments == 0 {
		opts.Appointments = 30000
	}
	if opts.Days == 0 {
		opts.Days = 14
	}
	if opts.Start.IsZero() {
		opts.Start = time.Now()
	}
	opts.Start = Day(opts.Start)
	if opts.Seed == 0 {
		opts.Seed = 1
	}
	if opts.Experts > opts.Profiles {
		return nil, fmt.Errorf("booking: seed: %d experts but only %d profiles", opts.Experts, opts.Profiles)
	}
	if opts.Profiles < 2 && opts.Appointments > 0 {
		return nil, errors.New("booking: seed: appointments need at least 2 profiles")
	}
	if slots := opts.Experts * opts.Days * SlotsPerDay; opts.Appointments > slots/2 {
		return nil, fmt.Errorf("booking: seed: %d appointments for %d slots; at most half may be taken", opts.Appointments, slots)
	}

	rng := rand.New(rand.NewPCG(opts.Seed, 0x7469657263616368))
	created := opts.Start.Add(-30 * 24 * time.Hour)
	d := &SeedData{
		Options:      opts,
		Profiles:     make([]Profile, opts.Profiles),
		Experts:      make([]Expert, opts.Experts),
		Appointments: make([]Appointment, opts.Appointments),
	}
	for i := range d.Profiles {
		id := int64(i + 1)
		first, last := firstNames[rng.IntN(len(firstNames))], lastNames[rng.IntN(len(lastNames))]
		d.Profiles[i] = Profile{
			ID:        id,
			Email:     fmt.Sprintf("user%d@example.com", id),
			Name:      first + " " + last,
			Bio:       fmt.Sprintf("%s %s has been a member since %d.", first, last, 2015+rng.IntN(10)),
			UpdatedAt: created,
		}
	}
	for i := range d.Experts {
		id := int64(i + 1)
		d.Experts[i] = Expert{
			ID:        id,
			ProfileID: id,
			Specialty: Specialties[rng.IntN(len(Specialties))],
			RateCents: int64(40+rng.IntN(160)) * 100,
			CreatedAt: created,
		}
	}
	type slot struct {
		expert int64
		at     int64
	}
	taken := make(map[slot]bool, opts.Appointments)
	for i := range d.Appointments {
		var s slot
		for {
			s.expert = int64(1 + rng.IntN(opts.Experts))
			day := opts.Start.AddDate(0, 0, rng.IntN(opts.Days))
			s.at = day.Add(FirstSlotHour*time.Hour + time.Duration(rng.IntN(SlotsPerDay))*SlotLength).Unix()
			if !taken[s] {
				taken[s] = true
				break
			}
		}
		guest := int64(1 + rng.IntN(opts.Profiles))
		for guest == s.expert { // expert i is profile i: nobody books themself
			guest = int64(1 + rng.IntN(opts.Profiles))
		}
		status := StatusBooked
		if rng.IntN(10) == 0 {
			status = StatusCancelled
		}
		d.Appointments[i] = Appointment{
			ID:        int64(i + 1),
			ExpertID:  s.expert,
			GuestID:   guest,
			StartsAt:  time.Unix(s.at, 0).UTC(),
			Status:    status,
			CreatedAt: created,
		}
	}
	return d, nil
}

var (
	firstNames = []string{"Ada", "Alan", "Barbara", "Claude", "Dennis", "Edsger", "Frances", "Grace", "Hedy", "Ivan", "Joan", "Ken", "Leslie", "Margaret", "Niklaus", "Radia", "Sophie", "Tim", "Vint", "Whitfield"}
	lastNames  = []string{"Lovelace", "Turing", "Liskov", "Shannon", "Ritchie", "Dijkstra", "Allen", "Hopper", "Lamarr", "Sutherland", "Clarke", "Thompson", "Lamport", "Hamilton", "Wirth", "Perlman", "Wilson", "Berners-Lee", "Cerf", "Diffie"}
)
