// Package keyhash computes keyed hashes (HMAC-SHA256 under one secret)
// of strings that must not leave the process as they are: tokens, users,
// actors. Redis keys, invalidation messages and telemetry carry the
// hash.
package keyhash
