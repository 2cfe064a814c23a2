package booking_test

import (
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tiercache/tiercache/examples/booking"
	"github.com/tiercache/tiercache/examples/booking/internal/dbtest"
	"github.com/tiercache/tiercache/examples/booking/pgstore"
	"github.com/tiercache/tiercache/examples/booking/sqlitestore"
)

// TestRepository checks the two implementations of booking.Repository
// against the same expectations, on the real databases.
func TestRepository(t *testing.T) {
	t.Parallel()
	for _, b := range dbtest.Backends {
		t.Run(b.Name, func(t *testing.T) {
			t.Parallel()
			st := b.Open(t)
			d := dbtest.Seed(t, st, dbtest.Small)
			ctx := t.Context()

			p, err := st.GetProfile(ctx, 3)
			require.NoError(t, err)
			require.Equal(t, d.Profiles[2], p)
			_, err = st.GetProfile(ctx, 999)
			require.Equal(t, b.NotFound, err)

			e, err := st.GetExpert(ctx, 2)
			require.NoError(t, err)
			require.Equal(t, d.Experts[1], e)
			_, err = st.GetExpert(ctx, 999)
			require.Equal(t, b.NotFound, err)

			a, err := st.GetAppointment(ctx, 5)
			require.NoError(t, err)
			require.Equal(t, d.Appointments[4], a)
			_, err = st.GetAppointment(ctx, 999)
			require.Equal(t, b.NotFound, err)

			spec := d.Experts[0].Specialty
			var want []booking.Expert
			for _, e := range d.Experts {
				if e.Specialty == spec {
					want = append(want, e)
				}
			}
			es, err := st.ListExpertsBySpecialty(ctx, spec)
			require.NoError(t, err)
			require.Equal(t, want, es)
			es, err = st.ListExpertsBySpecialty(ctx, "astrology")
			require.NoError(t, err)
			require.NotNil(t, es)
			require.Empty(t, es)

			// An expert's day: booked appointments of that day only, by time.
			first := d.Appointments[0]
			day, err := st.ListExpertDay(ctx, first.ExpertID, first.StartsAt)
			require.NoError(t, err)
			require.Equal(t, bookedOn(d, first.ExpertID, first.StartsAt), day)

			// Upcoming: from a time on, limited.
			guest := d.Appointments[0].GuestID
			from := d.Options.Start.Add(36 * time.Hour)
			up, err := st.ListUpcoming(ctx, guest, from, 100)
			require.NoError(t, err)
			for _, a := range up {
				require.Equal(t, guest, a.GuestID)
				require.Equal(t, booking.StatusBooked, a.Status)
				require.False(t, a.StartsAt.Before(from))
			}
			up1, err := st.ListUpcoming(ctx, guest, d.Options.Start, 1)
			require.NoError(t, err)
			require.LessOrEqual(t, len(up1), 1)

			// Writes.
			p, err = st.UpdateProfile(ctx, booking.ProfileUpdate{ID: 3, Name: "Grace Hopper", Bio: "COBOL"})
			require.NoError(t, err)
			require.Equal(t, "Grace Hopper", p.Name)
			require.Equal(t, "COBOL", p.Bio)
			require.Equal(t, d.Profiles[2].Email, p.Email)
			require.WithinDuration(t, time.Now(), p.UpdatedAt, time.Minute)
			got, err := st.GetProfile(ctx, 3)
			require.NoError(t, err)
			require.Equal(t, p, got)
			_, err = st.UpdateProfile(ctx, booking.ProfileUpdate{ID: 999, Name: "x"})
			require.ErrorIs(t, err, b.NotFound)

			slot := freeSlot(t, st, 1, d.Options.Start)
			booked, err := st.BookAppointment(ctx, booking.Booking{ExpertID: 1, GuestID: 7, StartsAt: slot})
			require.NoError(t, err)
			require.Greater(t, booked.ID, int64(len(d.Appointments)), "ids continue after the seeded ones")
			require.Equal(t, booking.StatusBooked, booked.Status)
			require.True(t, booked.StartsAt.Equal(slot))
			_, err = st.BookAppointment(ctx, booking.Booking{ExpertID: 1, GuestID: 8, StartsAt: slot})
			require.ErrorIs(t, err, booking.ErrSlotTaken)
			_, err = st.BookAppointment(ctx, booking.Booking{ExpertID: 1, GuestID: 8, StartsAt: slot.Add(time.Minute)})
			require.ErrorIs(t, err, booking.ErrInvalidSlot)
			_, err = st.BookAppointment(ctx, booking.Booking{ExpertID: 999, GuestID: 8, StartsAt: slot})
			require.Error(t, err, "no such expert")

			cancelled, err := st.CancelAppointment(ctx, booked.ID)
			require.NoError(t, err)
			require.Equal(t, booking.StatusCancelled, cancelled.Status)
			_, err = st.CancelAppointment(ctx, booked.ID)
			require.ErrorIs(t, err, booking.ErrNotBooked)
			_, err = st.CancelAppointment(ctx, 999999)
			require.ErrorIs(t, err, b.NotFound)

			// The cancelled slot can be booked again.
			again, err := st.BookAppointment(ctx, booking.Booking{ExpertID: 1, GuestID: 8, StartsAt: slot})
			require.NoError(t, err)
			require.NotEqual(t, booked.ID, again.ID)
		})
	}
}

func TestRepository_SchemaIsIdempotent(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	// Opening a database again applies the schema again and keeps the data;
	// seeding twice is refused.
	path := filepath.Join(t.TempDir(), "twice.db")
	lite, err := sqlitestore.Open(ctx, path)
	require.NoError(t, err)
	d := dbtest.Seed(t, lite, dbtest.Small)
	require.NoError(t, lite.Close())
	lite, err = sqlitestore.Open(ctx, path)
	require.NoError(t, err)
	defer lite.Close()
	p, err := lite.GetProfile(ctx, 1)
	require.NoError(t, err)
	require.Equal(t, d.Profiles[0], p)
	require.Error(t, lite.Seed(ctx, d))

	pg := dbtest.Postgres(t)
	d = dbtest.Seed(t, pg, dbtest.Small)
	again, err := pgstore.New(ctx, pg.Pool(), nil) // the pool's search_path names the test's schema
	require.NoError(t, err)
	p, err = again.GetProfile(ctx, 1)
	require.NoError(t, err)
	require.Equal(t, d.Profiles[0], p)
	require.Error(t, again.Seed(ctx, d))
}

// bookedOn returns the seeded booked appointments of expert on the day of
// t, by start time.
func bookedOn(d *booking.SeedData, expert int64, t time.Time) []booking.Appointment {
	day := booking.Day(t)
	out := []booking.Appointment{}
	for _, a := range d.Appointments {
		if a.ExpertID == expert && a.Status == booking.StatusBooked && booking.Day(a.StartsAt).Equal(day) {
			out = append(out, a)
		}
	}
	for i := 1; i < len(out); i++ { // insertion sort by start time
		for j := i; j > 0 && out[j].StartsAt.Before(out[j-1].StartsAt); j-- {
			out[j], out[j-1] = out[j-1], out[j]
		}
	}
	return out
}

// freeSlot returns a slot of expert on day that the database has free.
func freeSlot(t *testing.T, r booking.Repository, expert int64, day time.Time) time.Time {
	t.Helper()
	booked, err := r.ListExpertDay(t.Context(), expert, day)
	require.NoError(t, err)
	free := booking.FreeSlots(day, booked)
	require.NotEmpty(t, free)
	return free[len(free)/2]
}
