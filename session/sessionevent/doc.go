// Package sessionevent holds what a session.Manager reports to its
// Observer: the [Event] type, the [Observer] interface and their helpers.
// Package session re-exports each of them under the same name
// (session.Event, session.Observer...), which is how applications use
// them.
//
// It is a package of its own so that an Observer can be written without
// importing package session, and with it go-redis: the otel package's
// session observer imports only this package. It imports nothing but the
// standard library, and must stay so.
package sessionevent
