package codec

import (
	"time"
)

// Profile is a realistic cached value: a user profile of the booking
// application.
type Profile struct {
	ID        int64          `msgpack:"id" json:"id"`
	Email     string         `msgpack:"email" json:"email"`
	Name      string         `msgpack:"name" json:"name"`
	Bio       string         `msgpack:"bio" json:"bio"`
	Verified  bool           `msgpack:"verified" json:"verified"`
	Rating    float64        `msgpack:"rating" json:"rating"`
	Tags      []string       `msgpack:"tags" json:"tags"`
	Languages map[string]int `msgpack:"languages" json:"languages"`
	Avatar    []byte         `msgpack:"avatar" json:"avatar"`
	CreatedAt time.Time      `msgpack:"created_at" json:"created_at"`
	UpdatedAt time.Time      `msgpack:"updated_at" json:"updated_at"`
	Sessions  []Session      `msgpack:"sessions" json:"sessions"`
}

// Session is nested in Profile, so that slices of structs are exercised.
type Session struct {
	Device string `msgpack:"device" json:"device"`
	Seen   int64  `msgpack:"seen" json:"seen"`
}

func testProfile() Profile {
	return Profile{
		ID:       42,
		Email:    "ada@example.com",
		Name:     "Ada Lovelace",
		Bio:      "Analyst of engines. Available for consultations on Tuesdays and Thursdays, in English and French.",
		Verified: true,
		Rating:   4.87,
		Tags:     []string{"math", "engines", "poetry"},
		Languages: map[string]int{
			"en": 5,
			"fr": 3,
		},
		Avatar:    []byte{0x89, 'P', 'N', 'G', 0, 1, 2, 3},
		CreatedAt: time.Date(2024, 3, 1, 9, 30, 0, 123456789, time.UTC),
		UpdatedAt: time.Date(2025, 11, 7, 17, 5, 42, 0, time.UTC),
		Sessions: []Session{
			{Device: "ios", Seen: 1730000000},
			{Device: "web", Seen: 1731000000},
		},
	}
}

// utc returns p with its times in UTC, as testProfile has them: msgpack
// decodes times in the local zone.
func (p Profile) utc() Profile {
	p.CreatedAt = p.CreatedAt.UTC()
	p.UpdatedAt = p.UpdatedAt.UTC()
	return p
}
