package demo_test

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tiercache/tiercache/examples/booking/demo"
	"github.com/tiercache/tiercache/tier"
)

// TestReport_Targets checks that the final table ends with the booking
// application's targets beside what was measured, and whether each is met.
func TestReport_Targets(t *testing.T) {
	t.Parallel()
	good := demo.Report{
		Redis:   "127.0.0.1:6379",
		Reads:   10000,
		P50:     50 * time.Microsecond,
		P99:     2 * time.Millisecond,
		L1Bound: 80 << 20,
		Instances: [demo.Instances]tier.Stats{
			{L1Hits: 4500, Misses: 500, L2Hits: 300, Fallbacks: 10, L1Cost: 3 << 20},
			{L1Hits: 4400, Misses: 600, L2Hits: 400, Fallbacks: 0, L1Cost: 4 << 20},
		},
	}
	good.Total = tier.Stats{L1Hits: 8900, Misses: 1100, L2Hits: 700, Fallbacks: 10}
	good.SecondHalf = tier.Stats{L1Hits: 4700, Misses: 300, L2Hits: 100}
	bad := good
	bad.Redis = ""
	bad.P99 = 30 * time.Millisecond
	bad.Total = tier.Stats{L1Hits: 5000, Misses: 5000, L2Hits: 100, Fallbacks: 900, L2Errors: 50}
	bad.SecondHalf = tier.Stats{L1Hits: 2500, Misses: 2500, L2Hits: 50}
	bad.Instances[1].L1Cost = 81 << 20

	tests := []struct {
		name string
		rep  demo.Report
		want map[string][2]string // target name -> measured, met
	}{
		{name: "met", rep: good, want: map[string][2]string{
			"cache hit rate (L1 + L2)": {"96.0%", "yes"}, // second half: (4700+100)/5000
			"fallbacks":                {"0.1%", "yes"},
			"Redis errors":             {"0.00%", "yes"},
			"cache-operation p99":      {"2ms", "yes"},
			"L1 memory":                {"4.0 MiB", "yes"},
		}},
		{name: "missed", rep: bad, want: map[string][2]string{
			"cache hit rate (L1 + L2)": {"51.0%", "NO"}, // second half: (2500+50)/5000
			"fallbacks":                {"9.0%", "NO"},
			"Redis errors":             {"0.50%", "NO"},
			"cache-operation p99":      {"30ms", "NO"},
			"L1 memory":                {"81.0 MiB", "NO"},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var out bytes.Buffer
			require.NoError(t, tt.rep.WriteTable(&out))
			s := out.String()
			i := strings.Index(s, "booking app's targets")
			require.Positive(t, i, s)
			rows := strings.Split(strings.TrimSpace(s[i:]), "\n")
			require.Len(t, rows, 1+len(tt.want), "the targets end the table:\n%s", s)
			for _, row := range rows[1:] {
				var name string
				for n := range tt.want {
					if strings.HasPrefix(row, n+" ") {
						name = n
					}
				}
				require.NotEmpty(t, name, "unexpected row %q", row)
				f := strings.Fields(strings.TrimPrefix(row, name))
				// target (one or two fields), measured (one or two), met, (note...)
				require.Contains(t, strings.Join(f, " "), tt.want[name][0]+" "+tt.want[name][1], "row %q", row)
				delete(tt.want, name)
			}
			require.Empty(t, tt.want, "rows missing")
			require.Contains(t, s, "whole run from cold: ")
			require.Contains(t, s, "< 10ms")
			require.Contains(t, s, "<= 80.0 MiB")
		})
	}
}
