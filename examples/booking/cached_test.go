package booking_test

import (
	"context"
	"database/sql"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/tiercache/tiercache/backends/goredis"
	"github.com/tiercache/tiercache/codec"
	"github.com/tiercache/tiercache/dbcache"
	"github.com/tiercache/tiercache/examples/booking"
	"github.com/tiercache/tiercache/examples/booking/internal/dbtest"
	"github.com/tiercache/tiercache/internal/redistest"
	"github.com/tiercache/tiercache/invalidate"
	"github.com/tiercache/tiercache/tier"
)

// delivery bounds the wait for an invalidation to reach the other
// instance: a bound against a hang, not a latency assertion (the target, a
// p99 of 5 ms on loopback, is a benchmark figure). A loaded machine can
// make a bus miss heartbeats and resubscribe, with backoff, meanwhile.
const delivery = 30 * time.Second

// instance is one application instance: its own Redis client, bus and
// caches over the shared database.
type instance struct {
	*booking.CachedRepository
	rdb *redis.Client
	bus *invalidate.Bus
}

// newInstance returns an instance over repo whose caches share L2
// namespace ns with the other instances of the test, with an invalidation
// bus if withBus. It gives no option for missing rows: sql.ErrNoRows and
// pgx.ErrNoRows both work without.
func newInstance(t *testing.T, srv *redistest.Server, ns string, repo booking.Repository, withBus bool) *instance {
	t.Helper()
	rdb := srv.Client(t)
	// A generous L2Timeout: the tests wait for L2 writes, which a loaded
	// machine can delay past the default 100 ms (and the cache then skips
	// them, as it should).
	co := &booking.CacheOptions{Namespace: ns, L2: goredis.Must(rdb, nil), L2Timeout: 5 * time.Second}
	var bus *invalidate.Bus
	if withBus {
		bus = newBus(t, rdb)
		co.Invalidator = bus
	}
	caches, err := booking.NewCaches(co)
	require.NoError(t, err)
	t.Cleanup(func() { _ = caches.Close() })
	return &instance{CachedRepository: booking.NewCachedRepository(repo, caches), rdb: rdb, bus: bus}
}

// newBus returns a pub/sub invalidation bus over rdb, running until t
// ends. It runs on t.Context(), which ends before the cleanups run, so all
// the buses of a test stop together (each takes up to a heartbeat to
// return).
func newBus(t *testing.T, rdb *redis.Client) *invalidate.Bus {
	t.Helper()
	bus, err := invalidate.New(rdb, nil)
	require.NoError(t, err)
	done := make(chan error, 1)
	go func() { done <- bus.Run(t.Context()) }()
	t.Cleanup(func() { require.NoError(t, <-done) })
	return bus
}

// waitSubscribed waits until n instances listen on the bus channel of
// every cache of namespace ns, so that what one instance invalidates from
// now on reaches the others.
func waitSubscribed(t *testing.T, rdb *redis.Client, ns string, n int) {
	t.Helper()
	var chans []string
	for _, c := range []string{"profiles", "experts", "expert_lists", "appointments", "appointment_lists"} {
		chans = append(chans, invalidate.Channel(ns+"."+c))
	}
	require.Eventually(t, func() bool {
		subs, err := rdb.PubSubNumSub(t.Context(), chans...).Result()
		if err != nil {
			return false
		}
		for _, ch := range chans {
			if subs[ch] != int64(n) {
				return false
			}
		}
		return true
	}, 10*time.Second, time.Millisecond, "the instances' buses did not subscribe")
}

func namespace(t *testing.T) string {
	return "t-" + strings.NewReplacer("/", "-", " ", "-").Replace(t.Name())
}

// utc puts the times of v in UTC, so that values decoded from L2 (which
// msgpack gives in time.Local) compare equal to the database's.
func utc(v any) any {
	switch v := v.(type) {
	case booking.Profile:
		v.UpdatedAt = v.UpdatedAt.UTC()
		return v
	case booking.Expert:
		v.CreatedAt = v.CreatedAt.UTC()
		return v
	case booking.Appointment:
		v.StartsAt, v.CreatedAt = v.StartsAt.UTC(), v.CreatedAt.UTC()
		return v
	case []booking.Expert:
		out := make([]booking.Expert, len(v))
		for i, e := range v {
			out[i] = utc(e).(booking.Expert)
		}
		return out
	case []booking.Appointment:
		out := make([]booking.Appointment, len(v))
		for i, a := range v {
			out[i] = utc(a).(booking.Appointment)
		}
		return out
	}
	return v
}

// TestCachedRepository_ReadsMatchRepository checks that every cached read
// returns what the repository returns, for found and missing rows, whether
// it is answered by the database (instance A's first read), by L1 (A's
// second) or by L2 (instance B).
func TestCachedRepository_ReadsMatchRepository(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	for _, b := range dbtest.Backends {
		t.Run(b.Name, func(t *testing.T) {
			t.Parallel()
			st := b.Open(t)
			d := dbtest.Seed(t, st, dbtest.Small)
			ns := namespace(t)
			// No bus: a bus that confirms its subscription fences the loads
			// running then, which would make the L2 writes this test
			// waits for come and go.
			a := newInstance(t, srv, ns, st, false)
			bi := newInstance(t, srv, ns, st, false)
			c := a.Caches()
			day := d.Appointments[0]
			spec := d.Experts[0].Specialty
			tests := []struct {
				name  string
				read  func(booking.Repository) (any, error)
				l2Key string // the full L2 key the read fills
			}{
				{"profile", func(r booking.Repository) (any, error) { return r.GetProfile(t.Context(), 5) }, c.Profiles.Key(booking.ProfileKey(5))},
				{"profile not found", func(r booking.Repository) (any, error) { return r.GetProfile(t.Context(), 404) }, c.Profiles.Key(booking.ProfileKey(404))},
				{"expert", func(r booking.Repository) (any, error) { return r.GetExpert(t.Context(), 3) }, c.Experts.Key(booking.ExpertKey(3))},
				{"expert not found", func(r booking.Repository) (any, error) { return r.GetExpert(t.Context(), 404) }, c.Experts.Key(booking.ExpertKey(404))},
				{"appointment", func(r booking.Repository) (any, error) { return r.GetAppointment(t.Context(), 9) }, c.Appointments.Key(booking.AppointmentKey(9))},
				{"appointment not found", func(r booking.Repository) (any, error) { return r.GetAppointment(t.Context(), 404) }, c.Appointments.Key(booking.AppointmentKey(404))},
				{"experts by specialty", func(r booking.Repository) (any, error) { return r.ListExpertsBySpecialty(t.Context(), spec) }, c.ExpertLists.Key(booking.SpecialtyKey(spec))},
				{"experts of no specialty", func(r booking.Repository) (any, error) { return r.ListExpertsBySpecialty(t.Context(), "astrology") }, c.ExpertLists.Key(booking.SpecialtyKey("astrology"))},
				{"expert day", func(r booking.Repository) (any, error) {
					return r.ListExpertDay(t.Context(), day.ExpertID, day.StartsAt)
				}, c.AppointmentLists.Key(booking.ExpertDayKey(day.ExpertID, day.StartsAt))},
				{"upcoming", func(r booking.Repository) (any, error) {
					return r.ListUpcoming(t.Context(), day.GuestID, d.Options.Start, 5)
				}, c.AppointmentLists.Key(booking.UpcomingKey(day.GuestID, d.Options.Start, 5))},
			}
			for _, tt := range tests {
				want, wantErr := tt.read(st)
				for i, r := range []booking.Repository{a, a} {
					got, err := tt.read(r)
					checkErr(t, wantErr, err, i == 0, "%s: read %d on A", tt.name, i)
					require.Equal(t, utc(want), utc(got), "%s: read %d on A", tt.name, i)
				}
				require.Eventually(t, func() bool { // A writes L2 (over its lease) after answering its callers
					v, err := a.rdb.Get(t.Context(), tt.l2Key).Bytes()
					if err != nil {
						return false
					}
					_, _, err = codec.Parse(v) // a value, not a lease marker
					return err == nil
				}, 5*time.Second, time.Millisecond, "%s: A's stats: %+v", tt.name, a.Caches().Stats())
				hits := bi.Caches().Stats().L2Hits
				got, err := tt.read(bi)
				checkErr(t, wantErr, err, false, "%s: read on B", tt.name)
				require.Equal(t, utc(want), utc(got), "%s: read on B", tt.name)
				require.Equal(t, hits+1, bi.Caches().Stats().L2Hits, "%s: B's read is answered by L2", tt.name)
			}
			require.Zero(t, a.Caches().Stats().Fallbacks+bi.Caches().Stats().Fallbacks)
		})
	}
}

// checkErr checks a cached read's error against the repository's: none, or
// a missing row that matches sql.ErrNoRows, pgx.ErrNoRows and
// dbcache.ErrNotFound whichever tier answered, and has the repository's
// message when the read ran the query (ranQuery).
func checkErr(t *testing.T, want, got error, ranQuery bool, msgAndArgs ...any) {
	t.Helper()
	if want == nil {
		require.NoError(t, got, msgAndArgs...)
		return
	}
	require.ErrorIs(t, want, sql.ErrNoRows, "the repository's own error")
	for _, target := range []error{sql.ErrNoRows, pgx.ErrNoRows, dbcache.ErrNotFound} {
		require.ErrorIs(t, got, target, msgAndArgs...)
	}
	if ranQuery {
		require.Equal(t, want.Error(), got.Error(), msgAndArgs...)
	}
}

// TestCachedRepository_UpdateSeenByOtherInstance checks that an update
// through one instance reaches the other instance's L1 (through the bus).
func TestCachedRepository_UpdateSeenByOtherInstance(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	st := dbtest.SQLite(t)
	dbtest.Seed(t, st, dbtest.Small)
	ns := namespace(t)
	a := newInstance(t, srv, ns, st, true)
	b := newInstance(t, srv, ns, st, true)
	waitSubscribed(t, a.rdb, ns, 2)
	ctx := t.Context()

	var before booking.Profile
	require.Eventually(t, func() bool { // B holds profile 7 in L1
		var err error
		before, err = b.GetProfile(ctx, 7) // again if the bus's start fenced the load
		_, ok := b.Caches().Profiles.GetIfPresent(booking.ProfileKey(7))
		return err == nil && ok
	}, 5*time.Second, time.Millisecond)
	_, err := a.GetProfile(ctx, 7)
	require.NoError(t, err)

	received := b.bus.Stats().Received
	updated, err := a.UpdateProfile(ctx, booking.ProfileUpdate{ID: 7, Name: before.Name, Bio: "updated on A"})
	require.NoError(t, err)
	got, err := a.GetProfile(ctx, 7)
	require.NoError(t, err)
	require.Equal(t, updated.Bio, got.Bio, "the writer's own instance")

	require.Eventually(t, func() bool { return b.bus.Stats().Received > received },
		delivery, time.Millisecond, "A's invalidation did not reach B")
	got, err = b.GetProfile(ctx, 7)
	require.NoError(t, err)
	require.Equal(t, utc(updated), utc(got), "B's next read after delivery")
}

// TestCachedRepository_ConcurrentBookings books one slot 50 times at once,
// through two instances, on both databases.
func TestCachedRepository_ConcurrentBookings(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	for _, be := range dbtest.Backends {
		t.Run(be.Name, func(t *testing.T) {
			t.Parallel()
			st := be.Open(t)
			d := dbtest.Seed(t, st, dbtest.Small)
			ns := namespace(t)
			insts := []*instance{newInstance(t, srv, ns, st, true), newInstance(t, srv, ns, st, true)}
			waitSubscribed(t, insts[0].rdb, ns, 2)
			ctx := t.Context()
			const expert = 2
			day := d.Options.Start.AddDate(0, 0, 1)
			slot := freeSlot(t, st, expert, day)
			for _, in := range insts { // both instances hold the day, slot free
				l, err := in.ListExpertDay(ctx, expert, day)
				require.NoError(t, err)
				require.Contains(t, booking.FreeSlots(day, l), slot)
			}

			const n = 50
			var (
				wg    sync.WaitGroup
				start = make(chan struct{})
				errs  = make([]error, n)
				ids   = make([]int64, n)
			)
			for i := range n {
				wg.Go(func() {
					<-start
					a, err := insts[i%2].BookAppointment(ctx, booking.Booking{ExpertID: expert, GuestID: int64(11 + i%20), StartsAt: slot})
					errs[i], ids[i] = err, a.ID
				})
			}
			close(start)
			wg.Wait()
			var won int64
			taken := 0
			for i, err := range errs {
				switch {
				case err == nil:
					require.Zero(t, won, "a second booking of the slot succeeded")
					won = ids[i]
				case errors.Is(err, booking.ErrSlotTaken):
					taken++
				default:
					t.Fatalf("booking %d: unexpected error %v", i, err)
				}
			}
			require.NotZero(t, won, "no booking succeeded")
			require.Equal(t, n-1, taken)
			require.Equal(t, 1, rowsAt(t, st, expert, slot), "the database holds one row for the slot")

			for i, in := range insts {
				require.Eventually(t, func() bool {
					l, err := in.ListExpertDay(ctx, expert, day)
					return err == nil && containsAppointment(l, won)
				}, delivery, time.Millisecond, "instance %d's cached day list does not show the booking", i)
			}
		})
	}
}

// TestCachedRepository_CancelFreesSlot checks that a cancelled booking
// reappears as a free slot in both instances' cached day lists.
func TestCachedRepository_CancelFreesSlot(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	for _, be := range dbtest.Backends {
		t.Run(be.Name, func(t *testing.T) {
			t.Parallel()
			st := be.Open(t)
			d := dbtest.Seed(t, st, dbtest.Small)
			ns := namespace(t)
			a := newInstance(t, srv, ns, st, true)
			b := newInstance(t, srv, ns, st, true)
			waitSubscribed(t, a.rdb, ns, 2)
			ctx := t.Context()
			const expert, guest = 3, 12
			day := d.Options.Start.AddDate(0, 0, 2)
			slot := freeSlot(t, st, expert, day)

			booked, err := a.BookAppointment(ctx, booking.Booking{ExpertID: expert, GuestID: guest, StartsAt: slot})
			require.NoError(t, err)
			for _, in := range []*instance{a, b} {
				l, err := in.ListExpertDay(ctx, expert, day)
				require.NoError(t, err)
				require.NotContains(t, booking.FreeSlots(day, l), slot)
				up, err := in.ListUpcoming(ctx, guest, d.Options.Start, 50)
				require.NoError(t, err)
				require.True(t, containsAppointment(up, booked.ID))
				got, err := in.GetAppointment(ctx, booked.ID)
				require.NoError(t, err)
				require.Equal(t, booking.StatusBooked, got.Status)
			}

			cancelled, err := b.CancelAppointment(ctx, booked.ID)
			require.NoError(t, err)
			require.Equal(t, booking.StatusCancelled, cancelled.Status)
			for i, in := range []*instance{b, a} { // the writer first, then the other
				require.Eventually(t, func() bool {
					l, err := in.ListExpertDay(ctx, expert, day)
					if err != nil || !containsSlot(booking.FreeSlots(day, l), slot) {
						return false
					}
					up, err := in.ListUpcoming(ctx, guest, d.Options.Start, 50)
					if err != nil || containsAppointment(up, booked.ID) {
						return false
					}
					got, err := in.GetAppointment(ctx, booked.ID)
					return err == nil && got.Status == booking.StatusCancelled
				}, delivery, time.Millisecond, "instance %d still shows the cancelled booking", i)
			}
		})
	}
}

// TestCachedRepository_InvalidationFails checks that a write made while
// Redis is down returns its result with an error matching
// dbcache.ErrInvalidate and tier.ErrL2, and that the write was made.
func TestCachedRepository_InvalidationFails(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	st := dbtest.SQLite(t)
	dbtest.Seed(t, st, dbtest.Small)
	a := newInstance(t, srv, namespace(t), st, true)
	ctx := t.Context()
	_, err := a.GetProfile(ctx, 4)
	require.NoError(t, err)

	srv.Kill()
	p, err := a.UpdateProfile(ctx, booking.ProfileUpdate{ID: 4, Name: "Hedy Lamarr", Bio: "frequency hopping"})
	require.ErrorIs(t, err, dbcache.ErrInvalidate)
	require.ErrorIs(t, err, tier.ErrL2)
	require.Equal(t, "frequency hopping", p.Bio, "the write's result comes with the error")
	inDB, err := st.GetProfile(ctx, 4)
	require.NoError(t, err)
	require.Equal(t, p, inDB)
	got, err := a.GetProfile(ctx, 4)
	require.NoError(t, err)
	require.Equal(t, p.Bio, got.Bio, "the writer's own L1 was cleared anyway")

	// A failed write returns its own error, not an invalidation error.
	_, err = a.UpdateProfile(ctx, booking.ProfileUpdate{ID: 404})
	require.ErrorIs(t, err, dbtest.Backends[0].NotFound)
	require.NotErrorIs(t, err, dbcache.ErrInvalidate)
}

func containsAppointment(l []booking.Appointment, id int64) bool {
	for _, a := range l {
		if a.ID == id {
			return true
		}
	}
	return false
}

func containsSlot(slots []time.Time, s time.Time) bool {
	for _, x := range slots {
		if x.Equal(s) {
			return true
		}
	}
	return false
}

// rowsAt counts the rows (booked or not) of expert's slot at.
func rowsAt(t *testing.T, st dbtest.Store, expert int64, at time.Time) int {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	var n int
	var err error
	switch s := st.(type) {
	case interface{ Pool() *pgxpoolPool }:
		err = s.Pool().QueryRow(ctx, `SELECT count(*) FROM appointments WHERE expert_id = $1 AND starts_at = $2`, expert, at).Scan(&n)
	case interface{ DB() *sqlDB }:
		err = s.DB().QueryRowContext(ctx, `SELECT count(*) FROM appointments WHERE expert_id = ? AND starts_at = ?`, expert, at.Unix()).Scan(&n)
	default:
		t.Fatalf("rowsAt: unknown store %T", st)
	}
	require.NoError(t, err)
	return n
}
