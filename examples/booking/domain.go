package booking

import (
	"context"
	"time"
)

// Profile is a user of the booking application: a guest, an expert, or
// both.
type Profile struct {
	ID        int64     `msgpack:"id"`
	Email     string    `msgpack:"email"`
	Name      string    `msgpack:"name"`
	Bio       string    `msgpack:"bio"`
	UpdatedAt time.Time `msgpack:"updated_at"`
}

// Expert is a profile that can be booked.
type Expert struct {
	ID        int64     `msgpack:"id"`
	ProfileID int64     `msgpack:"profile_id"`
	Specialty string    `msgpack:"specialty"`
	RateCents int64     `msgpack:"rate_cents"`
	CreatedAt time.Time `msgpack:"created_at"`
}

// Status is the state of an [Appointment].
type Status string

// The statuses of an appointment.
const (
	StatusBooked    Status = "booked"
	StatusCancelled Status = "cancelled"
)

// Appointment is one slot of an expert booked by a guest.
type Appointment struct {
	ID        int64     `msgpack:"id"`
	ExpertID  int64     `msgpack:"expert_id"`
	GuestID   int64     `msgpack:"guest_id"`
	StartsAt  time.Time `msgpack:"starts_at"`
	Status    Status    `msgpack:"status"`
	CreatedAt time.Time `msgpack:"created_at"`
}

// ProfileUpdate is the new name and bio of a profile.
type ProfileUpdate struct {
	ID   int64
	Name string
	Bio  string
}

// Booking asks for the slot of an expert that starts at StartsAt.
type Booking struct {
	ExpertID int64
	GuestID  int64
	StartsAt time.Time
}

// Repository reads and writes the booking domain. Implementations must be
// safe for concurrent use. Times are UTC, with a precision of a second.
//
// A read of one row by id returns an error matching sql.ErrNoRows (with
// errors.Is) when there is no such row; pgx.ErrNoRows matches it. List reads
// return an empty, non-nil slice when nothing matches.
type Repository interface {
	// GetProfile returns the profile id.
	GetProfile(ctx context.Context, id int64) (Profile, error)
	// GetExpert returns the expert id.
	GetExpert(ctx context.Context, id int64) (Expert, error)
	// ListExpertsBySpecialty returns the experts of a specialty, by id.
	ListExpertsBySpecialty(ctx context.Context, specialty string) ([]Expert, error)
	// GetAppointment returns the appointment id, booked or cancelled.
	GetAppointment(ctx context.Context, id int64) (Appointment, error)
	// ListExpertDay returns the booked appointments of an expert that start
	// on the UTC day of day, by start time.
	ListExpertDay(ctx context.Context, expertID int64, day time.Time) ([]Appointment, error)
	// ListUpcoming returns up to limit booked appointments of a guest that
	// start at or after from, by start time.
	ListUpcoming(ctx context.Context, guestID int64, from time.Time, limit int) ([]Appointment, error)

	// UpdateProfile sets the name and bio of a profile and returns it.
	UpdateProfile(ctx context.Context, u ProfileUpdate) (Profile, error)
	// BookAppointment books a slot in one transaction. It returns
	// ErrSlotTaken when the expert already has a booked appointment at
	// that time (of two concurrent bookings of a slot exactly one
	// succeeds), and ErrInvalidSlot for a time off the slot grid.
	BookAppointment(ctx context.Context, b Booking) (Appointment, error)
	// CancelAppointment cancels a booked appointment and returns it, which
	// frees its slot. It returns ErrNotBooked if it is already cancelled.
	CancelAppointment(ctx context.Context, id int64) (Appointment, error)
}

// The slot grid: appointments last SlotLength and start on the hour or the
// half hour, from FirstSlotHour to LastSlotHour (UTC) included.
const (
	SlotLength    = 30 * time.Minute
	FirstSlotHour = 9
	LastSlotHour  = 17
	SlotsPerDay   = (LastSlotHour - FirstSlotHour + 1) * int(time.Hour/SlotLength)
)

// Day returns the start (00:00 UTC) of the UTC day of t.
func Day(t time.Time) time.Time {
	y, m, d := t.UTC().Date()
	return time.Date(y, m, d, 0, 0, 0, 0, time.UTC)
}

// Slots returns the start times of the slots of the UTC day of day.
func Slots(day time.Time) []time.Time {
	first := Day(day).Add(FirstSlotHour * time.Hour)
	out := make([]time.Time, SlotsPerDay)
	for i := range out {
		out[i] = first.Add(time.Duration(i) * SlotLength)
	}
	return out
}

// ValidSlot reports whether t is the start of a slot.
func ValidSlot(t time.Time) bool {
	t = t.UTC()
	if !t.Equal(t.Truncate(SlotLength)) {
		return false
	}
	h := t.Hour()
	return h >= FirstSlotHour && h <= LastSlotHour
}

// FreeSlots returns the slots of day that none of booked (booked
// appointments, as [Repository.ListExpertDay] returns them) occupies.
func FreeSlots(day time.Time, booked []Appointment) []time.Time {
	taken := make(map[int64]bool, len(booked))
	for _, a := range booked {
		if a.Status == StatusBooked {
			taken[a.StartsAt.Unix()] = true
		}
	}
	var free []time.Time
	for _, s := range Slots(day) {
		if !taken[s.Unix()] {
			free = append(free, s)
		}
	}
	return free
}
