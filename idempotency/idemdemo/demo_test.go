package idemdemo_test

import (
	"bytes"
	"testing"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/tiercache/tiercache/idempotency/idemdemo"
	"github.com/tiercache/tiercache/internal/redistest"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

func TestRun(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	var out bytes.Buffer
	rep, err := idemdemo.Run(t.Context(), idemdemo.Config{Client: srv.Client(t), Retries: 20, Out: &out})
	require.NoError(t, err)
	require.Equal(t, 1, rep.HandlerRuns)
	require.Equal(t, 1, rep.Charges)
	require.Equal(t, 19, rep.Replays, "every retry got the first response")
	require.GreaterOrEqual(t, rep.Requests, 20) // how many got 409 first depends on timing
	require.Equal(t, 1, rep.Mismatch422)
	require.Equal(t, 1, rep.Missing400)
	require.Equal(t, 1, rep.FormRuns)
	require.Equal(t, 1, rep.FormReplays)
	require.Equal(t, 1, rep.CodeWrong)
	require.Equal(t, 1, rep.CodeAccepted)
	require.Equal(t, 1, rep.CodeReused)
	require.Len(t, rep.Table(), 13)
	require.Contains(t, out.String(), "book and pay")
}
