package dbcache

import (
	"context"
	"strconv"
	"time"
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

	getProfile     func(context.Context, int64) (Profile, error)
	getExpert      func(context.Context, int64) (Expert, error)
	getAppointment func(context.Context, int64) (Appointment, error)
	bySpecialty    func(context.Context, string) ([]Expert, error)
	expertDay      func(context.Context, dayArg) ([]Appointment, error)
	upcoming       func(context.Context, upcomingArg) ([]Appointment, error)

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

// NewCachedRepository returns repo read through c. opts apply to the reads
// of one row: give WithNotFound(pgx.ErrNoRows) for a repository that
// reports a missing row with it, so cached "not found"s match it too.
// c stays the caller's to close.
func NewCachedRepository(repo Repository, c *Caches, opts ...Option) *CachedRepository {
	r := &CachedRepository{repo: repo, caches: c}
	r.getProfile = Wrap(c.Profiles, ProfileKey, repo.GetProfile, opts...)
	r.getExpert = Wrap(c.Experts, ExpertKey, repo.GetExpert, opts...)
	r.getAppointment = Wrap(c.Appointments, AppointmentKey, repo.GetAppointment, opts...)
	r.bySpecialty = WrapList(c.ExpertLists,
		SpecialtyKey,
		func(s string) []string { return []string{SpecialtyTag(s)} },
		repo.ListExpertsBySpecialty)
	r.expertDay = WrapList(c.AppointmentLists,
		func(a dayArg) string { return ExpertDayKey(a.expertID, a.day) },
		func(a dayArg) []string { return []string{ExpertDayTag(a.expertID, a.day)} },
		func(ctx context.Context, a dayArg) ([]Appointment, error) {
			return repo.ListExpertDay(ctx, a.expertID, a.day)
		})
	r.upcoming = WrapList(c.AppointmentLists,
		func(a upcomingArg) string { return UpcomingKey(a.guestID, a.from, a.limit) },
		func(a upcomingArg) []string { return []string{UpcomingTag(a.guestID)} },
		func(ctx context.Context, a upcomingArg) ([]Appointment, error) {
			return repo.ListUpcoming(ctx, a.guestID, a.from, a.limit)
		})

	r.updateProfile = WrapWrite(repo.UpdateProfile, func(u ProfileUpdate, _ Profile) []Invalidation {
		return []Invalidation{{Cache: c.Profiles, Keys: []string{ProfileKey(u.ID)}}}
	})
	r.book = WrapWrite(repo.BookAppointment, func(_ Booking, a Appointment) []Invalidation {
		return r.appointmentChanged(a)
	})
	r.cancel = WrapWrite(repo.CancelAppointment, func(_ int64, a Appointment) []Invalidation {
		return r.appointmentChanged(a)
	})
	return r
}

// appointmentChanged is what booking or cancelling a changes.
func (r *CachedRepository) appointmentChanged(a Appointment) []Invalidation {
	return []Invalidation{
		{Cache: r.caches.Appointments, Keys: []string{AppointmentKey(a.ID)}},
		{Cache: r.caches.AppointmentLists, Tags: []string{ExpertDayTag(a.ExpertID, a.StartsAt), UpcomingTag(a.GuestID)}},
	}
}

// Caches returns the caches r reads through.
func (r *CachedRepository) Caches() *Caches { return r.caches }

// GetProfile implements [Repository].
func (r *CachedRepository) GetProfile(ctx context.Context, id int64) (Profile, error) {
	return r.getProfile(ctx, id)
}

// GetExpert implements [Repository].
func (r *CachedRepository) GetExpert(ctx context.Context, id int64) (Expert, error) {
	return r.getExpert(ctx, id)
}

// ListExpertsBySpecialty implements [Repository].
func (r *CachedRepository) ListExpertsBySpecialty(ctx context.Context, specialty string) ([]Expert, error) {
	return r.bySpecialty(ctx, specialty)
}

// GetAppointment implements [Repository].
func (r *CachedRepository) GetAppointment(ctx context.Context, id int64) (Appointment, error) {
	return r.getAppointment(ctx, id)
}

// ListExpertDay implements [Repository].
func (r *CachedRepository) ListExpertDay(ctx context.Context, expertID int64, day time.Time) ([]Appointment, error) {
	return r.expertDay(ctx, dayArg{expertID: expertID, day: Day(day)})
}

// ListUpcoming implements [Repository]. See the NOTE on [CachedRepository]
// about from.
func (r *CachedRepository) ListUpcoming(ctx context.Context, guestID int64, from time.Time, limit int) ([]Appointment, error) {
	return r.upcoming(ctx, upcomingArg{guestID: guestID, from: from, limit: limit})
}

// UpdateProfile implements [Repository]. After the update has committed it
// deletes the profile's key; an error matching [ErrInvalidate] means the
// update was made but the caches may not have heard of it.
func (r *CachedRepository) UpdateProfile(ctx context.Context, u ProfileUpdate) (Profile, error) {
	return r.updateProfile(ctx, u)
}

// BookAppointment implements [Repository]. After the booking has committed
// it invalidates the expert's day and the guest's upcoming lists; an error
// matching [ErrInvalidate] means the booking was made.
func (r *CachedRepository) BookAppointment(ctx context.Context, b Booking) (Appointment, error) {
	return r.book(ctx, b)
}

// CancelAppointment implements [Repository]. After the cancellation has
// committed it invalidates the appointment and the lists that show it; an
// error matching [ErrInvalidate] means the cancellation was made.
func (r *CachedRepository) CancelAppointment(ctx context.Context, id int64) (Appointment, error) {
	return r.cancel(ctx, id)
}
