package idempotency

import (
	"fmt"
	"net/http"
	"strings"
)

// The HTTP header fields the middleware reads and writes.
const (
	// HeaderKey carries the client's idempotency key (IETF draft
	// "The Idempotency-Key HTTP Header Field": an RFC 8941 string such as
	// "8e03978e-40d5-43e8-bc93-6894a57f9324", quotes included; a bare token
	// is accepted too, as Stripe's clients send it).
	HeaderKey = "Idempotency-Key"
	// HeaderReplayed is "true" on a replayed response (Stripe's name).
	HeaderReplayed = "Idempotent-Replayed"
	// HeaderRetention is on every response of a protected route: how many
	// seconds a completed request is kept and replayed (the expiry policy
	// the draft asks servers to publish).
	HeaderRetention = "Idempotency-Retention"
)

// KeyFromHeader returns the idempotency key of r: ok is false when there is
// no Idempotency-Key field, and err is set for a field that appears more
// than once, is empty, or is not a valid RFC 8941 string or bare token.
func KeyFromHeader(r *http.Request) (key string, ok bool, err error) {
	vs := r.Header.Values(HeaderKey)
	switch len(vs) {
	case 0:
		return "", false, nil
	case 1:
	default:
		return "", true, fmt.Errorf("%w: %d %s fields", ErrInvalidKey, len(vs), HeaderKey)
	}
	v := strings.TrimSpace(vs[0])
	if strings.HasPrefix(v, `"`) {
		if v, err = parseSFString(v); err != nil {
			return "", true, err
		}
	}
	if err := checkKey(v); err != nil {
		return "", true, err
	}
	return v, true, nil
}

// parseSFString parses an RFC 8941 sf-string: DQUOTE *chr DQUOTE, where
// chr is printable ASCII but '"' and '\', or one of them escaped by '\'.
func parseSFString(v string) (string, error) {
	if len(v) < 2 || v[len(v)-1] != '"' {
		return "", fmt.Errorf("%w: unterminated string", ErrInvalidKey)
	}
	var b strings.Builder
	in := v[1 : len(v)-1]
	for i := 0; i < len(in); i++ {
		c := in[i]
		switch {
		case c == '\\':
			i++
			if i == len(in) || (in[i] != '"' && in[i] != '\\') {
				return "", fmt.Errorf("%w: bad escape", ErrInvalidKey)
			}
			b.WriteByte(in[i])
		case c == '"':
			return "", fmt.Errorf("%w: unescaped quote", ErrInvalidKey)
		case c < 0x20 || c > 0x7e:
			return "", fmt.Errorf("%w: byte %#02x", ErrInvalidKey, c)
		default:
			b.WriteByte(c)
		}
	}
	return b.String(), nil
}
