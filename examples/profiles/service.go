package profiles

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"strconv"

	"github.com/jackc/pgx/v5"

	"github.com/tiercache/tiercache/dbcache"
	"github.com/tiercache/tiercache/tier"
)

// ProfileKey is the cache key of the profile id.
func ProfileKey(id int64) string { return "profile:" + strconv.FormatInt(id, 10) }

// Service is one instance of the profiles service: its HTTP handlers read
// profiles through a cache and drop them from it after each update. It is
// safe for concurrent use.
type Service struct {
	profiles *dbcache.Query[int64, Profile]
	update   func(context.Context, UpdateProfileParams) (Profile, error)
}

// NewService returns an instance that runs q and caches profiles in c
// (whose options give the tiers and the invalidator). c stays the caller's
// to close.
func NewService(q *Queries, c *tier.Cache[Profile]) *Service {
	s := &Service{profiles: dbcache.Wrap(c, ProfileKey, q.GetProfile)}
	s.update = dbcache.WrapWrite(q.UpdateProfile, func(arg UpdateProfileParams, _ Profile) []dbcache.Invalidation {
		return []dbcache.Invalidation{s.profiles.Invalidation(arg.ID)}
	})
	return s
}

// GetProfile returns the profile id, from the cache or the database; a
// missing profile is an error matching pgx.ErrNoRows (and sql.ErrNoRows),
// whether the query ran or the cache answered.
func (s *Service) GetProfile(ctx context.Context, id int64) (Profile, error) {
	return s.profiles.Get(ctx, id)
}

// UpdateProfile updates a profile and, once the update has committed,
// drops it from the caches of every instance.
func (s *Service) UpdateProfile(ctx context.Context, arg UpdateProfileParams) (Profile, error) {
	return s.update(ctx, arg)
}

// Forget drops profiles from the caches of every instance: call it after
// a write made outside the service (a migration, an admin tool) has
// committed.
func (s *Service) Forget(ctx context.Context, ids ...int64) error {
	return s.profiles.Forget(ctx, ids...)
}

// Handler serves GET /profiles/{id} and PUT /profiles/{id} (a JSON body
// with name and bio).
func (s *Service) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /profiles/{id}", s.get)
	mux.HandleFunc("PUT /profiles/{id}", s.put)
	return mux
}

func (s *Service) get(w http.ResponseWriter, r *http.Request) {
	id, err := strconv.ParseInt(r.PathValue("id"), 10, 64)
	if err != nil {
		http.Error(w, "bad id", http.StatusBadRequest)
		return
	}
	p, err := s.GetProfile(r.Context(), id)
	respond(w, p, err)
}

func (s *Service) put(w http.ResponseWriter, r *http.Request) {
	id, err := strconv.ParseInt(r.PathValue("id"), 10, 64)
	if err != nil {
		http.Error(w, "bad id", http.StatusBadRequest)
		return
	}
	var body struct{ Name, Bio string }
	if err := json.NewDecoder(r.Body).Decode(&body); err != nil {
		http.Error(w, "bad body", http.StatusBadRequest)
		return
	}
	p, err := s.UpdateProfile(r.Context(), UpdateProfileParams{ID: id, Name: body.Name, Bio: body.Bio})
	if errors.Is(err, dbcache.ErrInvalidate) {
		// The update is made; the caches could not all be told (Redis is
		// down, say), so other instances may serve the old profile until
		// their L1TTL. The cache replays the invalidation when it can.
		slog.WarnContext(r.Context(), "profile updated, cache invalidation failed", "id", id, "err", err)
		err = nil
	}
	respond(w, p, err)
}

func respond(w http.ResponseWriter, p Profile, err error) {
	switch {
	case errors.Is(err, pgx.ErrNoRows): // on every read, whether the query ran or the cache answered
		http.Error(w, "no such profile", http.StatusNotFound)
	case err != nil:
		http.Error(w, "internal error", http.StatusInternalServerError)
	default:
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(p)
	}
}
