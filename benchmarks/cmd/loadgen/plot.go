package main

import (
	"fmt"
	"os"
	"strings"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/plotutil"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgimg"
)

// writePlot writes three panels: throughput, latency percentiles (p50, p90,
// p99) and L1 hit ratio, one bar per library and phase.
func writePlot(path string, rows []row) error {
	labels := make([]string, len(rows))
	for i, r := range rows {
		labels[i] = strings.Replace(r.impl, "go-redis-", "go-redis\n", 1) + "\n" + r.phase
	}
	thr, err := bars("throughput (reads/s)", "reads/s", labels, []string{""}, func(r row, _ int) float64 { return r.rate() }, rows)
	if err != nil {
		return err
	}
	lat, err := bars("latency percentiles (µs)", "µs", labels, []string{"p50", "p90", "p99"}, func(r row, k int) float64 {
		return float64([]int64{r.lat.P50.Nanoseconds(), r.lat.P90.Nanoseconds(), r.lat.P99.Nanoseconds()}[k]) / 1e3
	}, rows)
	if err != nil {
		return err
	}
	hit, err := bars("L1 hit ratio (%)", "%", labels, []string{""}, func(r row, _ int) float64 { return r.hitPct() }, rows)
	if err != nil {
		return err
	}
	grid := [][]*plot.Plot{{thr, lat, hit}}
	img := vgimg.New(15*vg.Inch, 4*vg.Inch)
	dc := draw.New(img)
	t := draw.Tiles{Rows: 1, Cols: 3, PadX: 6 * vg.Millimeter, PadTop: 2 * vg.Millimeter, PadBottom: 2 * vg.Millimeter,
		PadLeft: 2 * vg.Millimeter, PadRight: 2 * vg.Millimeter}
	cs := plot.Align(grid, t, dc)
	for i, p := range grid[0] {
		p.Draw(cs[0][i])
	}
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("loadgen: %w", err)
	}
	if _, err := (vgimg.PngCanvas{Canvas: img}).WriteTo(f); err != nil {
		f.Close()
		return fmt.Errorf("loadgen: write %s: %w", path, err)
	}
	return f.Close()
}

// bars is a grouped bar chart: for each row, one bar per series name.
func bars(title, ylabel string, labels, seriesNames []string, f func(row, int) float64, rows []row) (*plot.Plot, error) {
	p := plot.New()
	p.Title.Text = title
	p.Y.Label.Text = ylabel
	w := vg.Points(float64(36 / len(seriesNames)))
	for k, name := range seriesNames {
		vals := make(plotter.Values, len(rows))
		for i, r := range rows {
			vals[i] = f(r, k)
		}
		b, err := plotter.NewBarChart(vals, w)
		if err != nil {
			return nil, fmt.Errorf("loadgen: %s: %w", title, err)
		}
		b.Color = plotutil.Color(k)
		b.LineStyle.Width = 0
		b.Offset = vg.Length(float64(k)-float64(len(seriesNames)-1)/2) * w
		p.Add(b)
		if name != "" {
			p.Legend.Add(name, b)
		}
	}
	p.Legend.Top = true
	p.NominalX(labels...)
	p.X.Tick.Label.Font.Size = vg.Points(8)
	return p, nil
}
