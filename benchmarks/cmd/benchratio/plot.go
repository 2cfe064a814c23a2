package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/plotutil"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgimg"
)

// plots draws, from the medians, one panel per workload: the cost of a
// read divided by its floor (ratios.png), the Zipf throughput and L1 hit
// ratio (zipf.png), and the latency percentiles of the Staleness and
// RedisDown workloads (latency.png).
func plots(dir string, gorder []string, groups map[string][]*series) error {
	var micro, zipf, lat []string
	for _, g := range gorder {
		switch {
		case strings.HasPrefix(g, "Staleness"), strings.HasPrefix(g, "RedisDown"):
			lat = append(lat, g)
		case strings.HasPrefix(g, "L1Hit"), strings.HasPrefix(g, "L2Hit"), strings.HasPrefix(g, "MissLoad"):
			micro = append(micro, g)
		case strings.HasPrefix(g, "Zipf"):
			zipf = append(zipf, g)
		}
	}
	var ps []*plot.Plot
	for _, g := range micro {
		p, err := panel(g, groups[g], "× floor", func(s *series) float64 {
			fl := specOf(g).floors
			if r, ok := pairRatio(s, find(groups[g], fl[0]), "ns/op"); ok {
				return r.med
			}
			return 0
		})
		if err != nil {
			return err
		}
		ps = append(ps, p)
	}
	if err := tile(filepath.Join(dir, "ratios.png"), ps, 3); err != nil {
		return err
	}
	ps = ps[:0]
	for _, g := range zipf {
		p, err := panel(g+": reads/s", groups[g], "reads/s", func(s *series) float64 {
			if v := s.median("ns/get"); v > 0 {
				return 1e9 / v
			}
			return 0
		})
		if err != nil {
			return err
		}
		q, err := panel(g+": L1 hit %", groups[g], "%", func(s *series) float64 { return s.median("l1-hit-%") })
		if err != nil {
			return err
		}
		ps = append(ps, p, q)
	}
	if err := tile(filepath.Join(dir, "zipf.png"), ps, 4); err != nil {
		return err
	}
	ps = ps[:0]
	for _, g := range lat {
		// A library whose p99 is 100 ms or more (it waited out the op's 1 s
		// limit, or nearly) would flatten every other bar: it is left out
		// and named in the title.
		var drawn []*series
		var out []string
		for _, s := range groups[g] {
			if s.median("p99-us") >= 1e5 || s.median("stale-never/op") > 0 {
				out = append(out, s.impl)
				continue
			}
			drawn = append(drawn, s)
		}
		for _, pct := range []string{"p50-us", "p99-us"} {
			title := g + ": " + strings.TrimSuffix(pct, "-us") + " µs"
			if len(out) > 0 {
				title += "\n(not drawn, p99 ≥ 100 ms: " + strings.Join(out, ", ") + ")"
			}
			p, err := panel(title, drawn, "µs", func(s *series) float64 { return s.median(pct) })
			if err != nil {
				return err
			}
			ps = append(ps, p)
		}
	}
	return tile(filepath.Join(dir, "latency.png"), ps, 4)
}

// panel is a bar chart of f over the libraries of one workload.
func panel(title string, ss []*series, ylabel string, f func(*series) float64) (*plot.Plot, error) {
	p := plot.New()
	p.Title.Text = title
	p.Y.Label.Text = ylabel
	// tiercache's bars in one colour, the floors' and peers' in another.
	vals := make(plotter.Values, len(ss))
	ours := make(plotter.Values, len(ss))
	others := make(plotter.Values, len(ss))
	names := make([]string, len(ss))
	for i, s := range ss {
		vals[i] = f(s)
		if strings.HasPrefix(s.impl, "tiercache") {
			ours[i] = vals[i]
		} else {
			others[i] = vals[i]
		}
		names[i] = strings.NewReplacer("-", "\n", "+", "+\n").Replace(s.impl)
	}
	for k, v := range []plotter.Values{others, ours} {
		b, err := plotter.NewBarChart(v, vg.Points(22))
		if err != nil {
			return nil, fmt.Errorf("benchratio: %s: %w", title, err)
		}
		b.Color = plotutil.Color(2 * k)
		b.LineStyle.Width = 0
		p.Add(b)
	}
	labels, err := valueLabels(vals)
	if err != nil {
		return nil, err
	}
	p.Add(labels)
	p.NominalX(names...)
	p.X.Tick.Label.Font.Size = vg.Points(8)
	return p, nil
}

func valueLabels(vals plotter.Values) (*plotter.Labels, error) {
	xys := make(plotter.XYs, len(vals))
	txt := make([]string, len(vals))
	for i, v := range vals {
		xys[i] = plotter.XY{X: float64(i), Y: v}
		txt[i] = fmtVal(v)
	}
	l, err := plotter.NewLabels(plotter.XYLabels{XYs: xys, Labels: txt})
	if err != nil {
		return nil, fmt.Errorf("benchratio: labels: %w", err)
	}
	for i := range l.TextStyle {
		l.TextStyle[i].XAlign = draw.XCenter
		l.TextStyle[i].Font.Size = vg.Points(8)
	}
	return l, nil
}

// tile lays the panels out cols to a row and writes them as one PNG.
func tile(path string, ps []*plot.Plot, cols int) error {
	if len(ps) == 0 {
		return nil
	}
	cols = min(cols, len(ps))
	rows := (len(ps) + cols - 1) / cols
	grid := make([][]*plot.Plot, rows)
	for i := range grid {
		grid[i] = make([]*plot.Plot, cols)
	}
	for i, p := range ps {
		grid[i/cols][i%cols] = p
	}
	img := vgimg.New(vg.Length(cols)*4.4*vg.Inch, vg.Length(rows)*3.6*vg.Inch)
	dc := draw.New(img)
	t := draw.Tiles{Rows: rows, Cols: cols, PadX: vg.Millimeter * 4, PadY: vg.Millimeter * 4,
		PadTop: vg.Millimeter * 2, PadBottom: vg.Millimeter * 2, PadLeft: vg.Millimeter * 2, PadRight: vg.Millimeter * 2}
	canvases := plot.Align(grid, t, dc)
	for j := range grid {
		for i, p := range grid[j] {
			if p != nil {
				p.Draw(canvases[j][i])
			}
		}
	}
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("benchratio: %w", err)
	}
	if _, err := (vgimg.PngCanvas{Canvas: img}).WriteTo(f); err != nil {
		f.Close()
		return fmt.Errorf("benchratio: write %s: %w", path, err)
	}
	return f.Close()
}
