package booking

import "errors"

var (
	// ErrSlotTaken is returned by [Repository.BookAppointment] when the
	// expert already has a booked appointment starting at that time.
	ErrSlotTaken = errors.New("booking: slot already taken")
	// ErrInvalidSlot is returned by [Repository.BookAppointment] for a start
	// time that is not on the slot grid (see [SlotLength]).
	ErrInvalidSlot = errors.New("booking: not a valid slot")
	// ErrNotBooked is returned by [Repository.CancelAppointment] for an
	// appointment that exists but is not booked (already cancelled).
	ErrNotBooked = errors.New("booking: appointment is not booked")
)
