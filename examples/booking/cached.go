package booking

import (
	"context"
	"strconv"
	"time"

	"github.com/tiercache/tiercache/dbcache"
)

// CachedRepository is a [Repository] that reads through [Caches] and
// invalidates them after each write has committed. It is safe for
// concurrent use.
//
// Keys and tags (see [ProfileKey] and the other Key and Tag functions):
//
//	read                    cache             key                                  tag
//	GetProfile              Profiles          profile:<id>
//	GetExpert               Experts           expert:<id>
//	GetAppointment          Appointments      appointment:<id>
//	ListExpertsBySpecialty  ExpertLists       specialty:<s>:experts                specialty:<s>
//	ListExpertDay           AppointmentLists  expert:<id>:day:<yyyy-mm-dd>         the same
//	ListUpcoming            AppointmentLists  user:<id>:upcoming:<from>:<limit>    user:<id>:upcoming
//
// UpdateProfile deletes profile:<id>. BookAppointment invalidates the tags
// of the expert's day and of the guest's upcoming list, and deletes
// appointment:<new id> (a "not found" cached before the booking).
// CancelAppointment deletes appointment:<id> and invalidates the same tags.
//
// NOTE: ListUpcoming is cached by its from argument: pass a rounded time
// (the start of the day or of the hour), not time.Now(), or every call is a
// miss.
type CachedRepository struct {
	repo   Repository
	caches *Caches

	// The reads, each a dbcache.Query that names its cache and key once,
	// for the reads and for the writes that must drop what it cached.
	profiles     *dbcache.Query[int64, Profile]
	experts      *dbcache.Query[int64, Expert]
	appointments *dbcache.Query[int64, Appointment]
	bySpecialty  *dbcache.Query[string, []Expert]
	expertDay    *dbcache.Query[dayArg, []Appointment]
	upcoming     *dbcache.Query[upcomingArg, []Appointment]

	updateProfile func(context.Context, ProfileUpdate) (Profile, error)
	book          func(context.Context, Booking) (Appointment, error)
	cancel        func(context.Context, int64) (Appointment, error)
}

var _ Repository = (*CachedRepository)(nil)

type dayArg struct {
	expertID int64
	day      time.Time
}

type upcomingArg struct {
	guestID int64
	from    time.Time
	limit   int
}

// ProfileKey is the cache key of the profile id.
func ProfileKey(id int64) string { return "profile:" + strconv.FormatInt(id, 10) }

// ExpertKey is the cache key of the expert id.
func ExpertKey(id int64) string { return "expert:" + strconv.FormatInt(id, 10) }

// AppointmentKey is the cache key of the appointment id.
func AppointmentKey(id int64) string { return "appointment:" + strconv.FormatInt(id, 10) }

// ExpertDayKey is the cache key of the list of an expert's appointments on
// the UTC day of day.
func ExpertDayKey(expertID int64, day time.Time) string {
	return "expert:" + strconv.FormatInt(expertID, 10) + ":day:" + Day(day).Format(time.DateOnly)
}

// ExpertDayTag is the tag of the cached lists of an expert's appointments
// on the UTC day of day.
func ExpertDayTag(expertID int64, day time.Time) string { return ExpertDayKey(expertID, day) }

// UpcomingKey is the cache key of the list of a guest's upcoming
// appointments from from, up to limit.
func UpcomingKey(guestID int64, from time.Time, limit int) string {
	return UpcomingTag(guestID) + ":" + strconv.FormatInt(from.UnixNano(), 10) + ":" + strconv.Itoa(limit)
}

// UpcomingTag is the tag of the cached lists of a guest's upcoming
// appointments.
func UpcomingTag(guestID int64) string {
	return "user:" + strconv.FormatInt(guestID, 10) + ":upcoming"
}

// SpecialtyKey is the cache key of the list of a specialty's experts.
func SpecialtyKey(specialty string) string { return "specialty:" + specialty + ":experts" }

// SpecialtyTag is the tag of the cached lists of a specialty's experts.
func SpecialtyTag(specialty string) string { return "specialty:" + specialty }

// NewCachedRepository returns repo read through c. A missing row needs no
// option, whether repo reports it with sql.ErrNoRows or pgx.ErrNoRows:
// every read of one, cached or not, matches both (see [dbcache.Wrap]).
// opts apply to the reads of one row. c stays the caller's to close.
func NewCachedRepository(repo Repository, c *Caches, opts ...dbcache.Option) *CachedRepository {
	r := &CachedRepository{repo: repo, caches: c}
	r.profiles = dbcache.Wrap(c.Profiles, ProfileKey, repo.GetProfile, opts...)
	r.experts = dbcache.Wrap(c.Experts, ExpertKey, repo.GetExpert, opts...)
	r.appointments = dbcache.Wrap(c.Appointments, AppointmentKey, repo.GetAppointment, opts...)
	r.bySpecialty = dbcache.WrapList(c.ExpertLists,
		SpecialtyKey,
		func(s string) []string { return []string{SpecialtyTag(s)} },
		repo.ListExpertsBySpecialty)
	r.expertDay = dbcache.WrapList(c.AppointmentLists,
		func(a dayArg) string { return ExpertDayKey(a.expertID, a.day) },
		func(a dayArg) []string { return []string{ExpertDayTag(a.expertID, a.day)} },
		func(ctx context.Context, a dayArg) ([]Appointment, error) {
			return repo.ListExpertDay(ctx, a.expertID, a.day)
		})
	r.upcoming = dbcache.WrapList(c.AppointmentLists,
		func(a upcomingArg) string { return UpcomingKey(a.guestID, a.from, a.limit) },
		func(a upcomingArg) []string { return []string{UpcomingTag(a.guestID)} },
		func(ctx context.Context, a upcomingArg) ([]Appointment, error) {
			return repo.ListUpcoming(ctx, a.guestID, a.from, a.limit)
		})

	r.updateProfile = dbcache.WrapWrite(repo.UpdateProfile, func(u ProfileUpdate, _ Profile) []dbcache.Invalidation {
		return []dbcache.Invalidation{r.profiles.Invalidation(u.ID)}
	})
	r.book = dbcache.WrapWrite(repo.BookAppointment, func(_ Booking, a Appointment) []dbcache.Invalidation {
		return r.appointmentChanged(a)
	})
	r.cancel = dbcache.WrapWrite(repo.CancelAppointment, func(_ int64, a Appointment) []dbcache.Invalidation {
		return r.appointmentChanged(a)
	})
	return r
}

// appointmentChanged is what booking or cancelling a changes: the
// appointment itself, and the lists that show it (by tag: every cached
// list of the expert's day and of the guest's upcoming appointments,
// whatever their other arguments).
func (r *CachedRepository) appointmentChanged(a Appointment) []dbcache.Invalidation {
	return []dbcache.Invalidation{
		r.appointments.Invalidation(a.ID),
		{Cache: r.caches.AppointmentLists, Tags: []string{ExpertDayTag(a.ExpertID, a.StartsAt), UpcomingTag(a.GuestID)}},
	}
}

// Caches returns the caches r reads through.
func (r *CachedRepository) Caches() *Caches { return r.caches }

// GetProfile implements [Repository].
func (r *CachedRepository) GetProfile(ctx context.Context, id int64) (Profile, error) {
	return r.profiles.Get(ctx, id)
}

// GetExpert implements [Repository].
func (r *CachedRepository) GetExpert(ctx context.Context, id int64) (Expert, error) {
	return r.experts.Get(ctx, id)
}

// ListExpertsBySpecialty implements [Repository].
func (r *CachedRepository) ListExpertsBySpecialty(ctx context.Context, specialty string) ([]Expert, error) {
	return r.bySpecialty.Get(ctx, specialty)
}

// GetAppointment implements [Repository].
func (r *CachedRepository) GetAppointment(ctx context.Context, id int64) (Appointment, error) {
	return r.appointments.Get(ctx, id)
}

// ListExpertDay implements [Repository].
func (r *CachedRepository) ListExpertDay(ctx context.Context, expertID int64, day time.Time) ([]Appointment, error) {
	return r.expertDay.Get(ctx, dayArg{expertID: expertID, day: Day(day)})
}

// ListUpcoming implements [Repository]. See the NOTE on [CachedRepository]
// about from.
func (r *CachedRepository) ListUpcoming(ctx context.Context, guestID int64, from time.Time, limit int) ([]Appointment, error) {
	return r.upcoming.Get(ctx, upcomingArg{guestID: guestID, from: from, limit: limit})
}

// UpdateProfile implements [Repository]. After the update has committed it
// deletes the profile's key; an error matching [dbcache.ErrInvalidate] means the
// update was made but the caches may not have heard of it.
func (r *CachedRepository) UpdateProfile(ctx context.Context, u ProfileUpdate) (Profile, error) {
	return r.updateProfile(ctx, u)
}

// BookAppointment implements [Repository]. After the booking has committed
// it invalidates the expert's day and the guest's upcoming lists; an error
// matching [dbcache.ErrInvalidate] means the booking was made.
func (r *CachedRepository) BookAppointment(ctx context.Context, b Booking) (Appointment, error) {
	return r.book(ctx, b)
}

// CancelAppointment implements [Repository]. After the cancellation has
// committed it invalidates the appointment and the lists that show it; an
// error matching [dbcache.ErrInvalidate] means the cancellation was made.
func (r *CachedRepository) CancelAppointment(ctx context.Context, id int64) (Appointment, error) {
	return r.cancel(ctx, id)
}
