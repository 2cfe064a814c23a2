// Package demo is the booking application's rate limits as one table in
// code ([Endpoints]), and the part of the tiercache demo that exercises
// them ([Run]): a burst against "role changes" and "profile APIs" through
// two Limiter instances, as two application instances would run, with
// the allowed and denied counts for the demo's final table. With no Redis
// it shows each policy's declared outage mode instead.
package demo
