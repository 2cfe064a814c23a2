package redisconf

import "testing"

func TestBadNamespace(t *testing.T) {
	for ns, bad := range map[string]bool{
		"profiles": false, "a:b": false, "": false,
		"{x}": true, "a{": true, "a}": true, "a\nb": true, "a\x7fb": true,
	} {
		if got := BadNamespace(ns) != ""; got != bad {
			t.Errorf("BadNamespace(%q) refused = %v, want %v", ns, got, bad)
		}
	}
}
