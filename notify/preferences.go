package notify

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/tiercache/tiercache/tier"
)

// Preferences is what a user chose about their notifications. The zero
// value means no quiet hours.
type Preferences struct {
	// TimeZone is the IANA name of the user's time zone ("Europe/Paris").
	// Default: UTC.
	TimeZone string
	// QuietFrom and QuietUntil are the user's quiet hours, as offsets from
	// local midnight in [0, 24h): a digest due at a local time in
	// [QuietFrom, QuietUntil) is held until QuietUntil. QuietFrom after
	// QuietUntil spans midnight (22:00 to 07:00). Equal: no quiet hours.
	QuietFrom, QuietUntil time.Duration
	// QuietChannels are the channels the quiet hours hold. Empty: every
	// channel.
	QuietChannels []Channel
}

// PreferenceSource gives a user's [Preferences] to a [Consumer]. It must
// be safe for concurrent use and honour ctx; it is called once per user
// turn that has a digest ready, so it should be cached:
// [CachedPreferences] reads through a tier cache.
type PreferenceSource interface {
	Preferences(ctx context.Context, user string) (Preferences, error)
}

// PreferenceFunc adapts a function to a [PreferenceSource].
type PreferenceFunc func(ctx context.Context, user string) (Preferences, error)

// Preferences calls f.
func (f PreferenceFunc) Preferences(ctx context.Context, user string) (Preferences, error) {
	return f(ctx, user)
}

// CachedPreferences returns a [PreferenceSource] that reads a user's
// preferences through cache (key: the user id), loading a miss with load
// (the application's query). The cache's TTL bounds how long a change of
// preferences takes to apply, unless the application deletes the user's
// key when it saves new preferences. The caller owns cache.
func CachedPreferences(cache *tier.Cache[Preferences], load PreferenceFunc) PreferenceSource {
	return PreferenceFunc(func(ctx context.Context, user string) (Preferences, error) {
		return cache.GetOrLoad(ctx, user, tier.LoadFunc[Preferences](load))
	})
}

// check reports whether p can be applied.
func (p Preferences) check() error {
	if p.QuietFrom < 0 || p.QuietFrom >= 24*time.Hour || p.QuietUntil < 0 || p.QuietUntil >= 24*time.Hour {
		return fmt.Errorf("%w: quiet hours %v to %v outside [0, 24h)", ErrInvalidOptions, p.QuietFrom, p.QuietUntil)
	}
	_, err := location(p.TimeZone)
	return err
}

// quietUntil returns when the quiet hours that hold channel ch at now
// (unix ms) end, in unix ms, or 0 if ch is not held at now.
func (p Preferences) quietUntil(ch Channel, now int64) (int64, error) {
	if p.QuietFrom == p.QuietUntil || len(p.QuietChannels) > 0 && !slices.Contains(p.QuietChannels, ch) {
		return 0, nil
	}
	if err := p.check(); err != nil {
		return 0, err
	}
	loc, _ := location(p.TimeZone)
	t := time.UnixMilli(now).In(loc)
	y, m, d := t.Date()
	// The wall clock's offset from midnight: a DST change earlier in the
	// day does not shift it.
	off := time.Duration(t.Hour())*time.Hour + time.Duration(t.Minute())*time.Minute +
		time.Duration(t.Second())*time.Second + time.Duration(t.Nanosecond())
	at := func(day int, o time.Duration) int64 {
		// time.Date normalises a wall time that a DST change skips.
		return time.Date(y, m, day, int(o/time.Hour), int(o%time.Hour/time.Minute), int(o%time.Minute/time.Second), 0, loc).UnixMilli()
	}
	from, until := p.QuietFrom, p.QuietUntil
	switch {
	case from < until && off >= from && off < until:
		return at(d, until), nil
	case from > until && off >= from:
		return at(d+1, until), nil
	case from > until && off < until:
		return at(d, until), nil
	}
	return 0, nil
}

// locations caches time.LoadLocation's results by name.
var locations sync.Map // string → *time.Location

func location(name string) (*time.Location, error) {
	if name == "" {
		return time.UTC, nil
	}
	if l, ok := locations.Load(name); ok {
		return l.(*time.Location), nil
	}
	l, err := time.LoadLocation(name)
	if err != nil {
		return nil, fmt.Errorf("%w: time zone %q: %w", ErrInvalidOptions, name, err)
	}
	locations.Store(name, l)
	return l, nil
}
