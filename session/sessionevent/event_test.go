package sessionevent_test

import (
	"context"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/tiercache/tiercache/session/sessionevent"
)

// TestImportsStandardLibraryOnly checks the reason this package exists: an
// Observer can implement it without pulling in go-redis (or anything but
// the standard library).
func TestImportsStandardLibraryOnly(t *testing.T) {
	t.Parallel()
	files, err := filepath.Glob("*.go")
	require.NoError(t, err)
	checked := 0
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		src, err := os.ReadFile(f)
		require.NoError(t, err)
		af, err := parser.ParseFile(token.NewFileSet(), f, src, parser.ImportsOnly)
		require.NoError(t, err)
		for _, imp := range af.Imports {
			path, err := strconv.Unquote(imp.Path.Value)
			require.NoError(t, err)
			first, _, _ := strings.Cut(path, "/")
			require.NotContains(t, first, ".", "%s imports %s", f, path)
		}
		checked++
	}
	require.Positive(t, checked)
}

func TestEventKind_String(t *testing.T) {
	t.Parallel()
	tests := []struct {
		kind sessionevent.EventKind
		want string
	}{
		{sessionevent.EventCreated, "created"},
		{sessionevent.EventRenewed, "renewed"},
		{sessionevent.EventRevoked, "revoked"},
		{sessionevent.EventNewDevice, "new_device"},
		{sessionevent.EventNewIP, "new_ip"},
		{sessionevent.EventFallback, "fallback"},
		{0, "unknown"},
	}
	for _, tt := range tests {
		t.Run(tt.want, func(t *testing.T) {
			t.Parallel()
			require.Equal(t, tt.want, tt.kind.String())
		})
	}
}

func TestObserverFunc(t *testing.T) {
	t.Parallel()
	var got []sessionevent.Event
	var o sessionevent.Observer = sessionevent.ObserverFunc(func(_ context.Context, e sessionevent.Event) { got = append(got, e) })
	o.Event(t.Context(), sessionevent.Event{Kind: sessionevent.EventCreated, Ref: "r"})
	sessionevent.NoopObserver{}.Event(t.Context(), sessionevent.Event{Kind: sessionevent.EventRevoked})
	require.Equal(t, []sessionevent.Event{{Kind: sessionevent.EventCreated, Ref: "r"}}, got)
}
