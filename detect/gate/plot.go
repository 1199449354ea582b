package gate

import (
	"bytes"
	"fmt"
	"image/color"
	"math"
	"net/http"
	"slices"
	"strings"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgsvg"

	"github.com/immune-dev/immune/detect"
)

// plot draws one metric's canary/baseline ratio over the deployment, as
// each evaluation estimated it, with the confidence sequence's bounds, the
// tolerance boundary, no change (1), and marks at the start and stages.
// The bounds are what the verdict rests on: the canary fails once the
// bound on the good side crosses the boundary.
func (a *API) plot(w http.ResponseWriter, r *http.Request) {
	name := r.URL.Query().Get("metric")
	d, err := a.svc.Get(r.PathValue("id"))
	if err != nil {
		a.writeError(w, r, err)
		return
	}
	var metric *detect.Metric
	var known []string
	if p, ok := a.svc.Profile(d.Profile); ok {
		for i, m := range p.Metrics {
			known = append(known, m.Name)
			if m.Name == name {
				metric = &p.Metrics[i]
			}
		}
	}
	if name == "" {
		a.writeError(w, r, badRequest("metric is required: one of %s", strings.Join(known, ", ")))
		return
	}
	if metric == nil {
		a.writeError(w, r, fmt.Errorf("%w: metric %q is not in profile %q (metrics: %s)", detect.ErrNotFound, name, d.Profile, strings.Join(known, ", ")))
		return
	}
	history, err := a.svc.History(d.ID, 0)
	if err != nil {
		a.writeError(w, r, err)
		return
	}
	data, err := a.svc.MetricData(r.Context(), d, *metric)
	if err != nil {
		a.writeError(w, r, err)
		return
	}
	svg, err := plotMetric(d, *metric, data, history)
	if err != nil {
		a.writeError(w, r, err)
		return
	}
	w.Header().Set("Content-Type", "image/svg+xml")
	w.Header().Set("Cache-Control", "no-store")
	if _, err := w.Write(svg); err != nil {
		a.log.Warn("write plot", "id", d.ID, "err", err)
	}
}

// plotMetric renders the chart as SVG: the raw series above, the ratio
// and its bounds below, on one time axis.
func plotMetric(d *detect.Deployment, m detect.Metric, data detect.MetricData, history []detect.Verdict) ([]byte, error) {
	ratio, err := metricPlot(d, m, history)
	if err != nil {
		return nil, err
	}
	raw, err := seriesPlot(d, m, data)
	if err != nil {
		return nil, err
	}
	raw.X.Min, raw.X.Max = ratio.X.Min, ratio.X.Max
	c := vgsvg.New(8*vg.Inch, 7*vg.Inch)
	tiles := draw.Tiles{Rows: 2, Cols: 1, PadX: vg.Millimeter, PadY: vg.Millimeter * 4, PadTop: vg.Millimeter * 2, PadBottom: vg.Millimeter * 2}
	plots := [][]*plot.Plot{{raw}, {ratio}}
	canvases := plot.Align(plots, tiles, draw.New(c))
	for i := range plots {
		plots[i][0].Draw(canvases[i][0])
	}
	var buf bytes.Buffer
	if _, err := c.WriteTo(&buf); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// seriesPlot draws the canary's and the baseline's values per step, as
// the judge saw them (a count metric as events per unit of exposure), with
// the deploy and stage marks. X is minutes since the start.
func seriesPlot(d *detect.Deployment, m detect.Metric, data detect.MetricData) (*plot.Plot, error) {
	var canary, baseline plotter.XYs
	add := func(xys *plotter.XYs, i int, y float64) {
		if !math.IsNaN(y) && !math.IsInf(y, 0) {
			*xys = append(*xys, plotter.XY{X: d.StepTime(i).Sub(d.Start).Minutes(), Y: y})
		}
	}
	if m.Kind == detect.KindCount {
		for i, s := range data.Steps {
			add(&canary, i, s.CanaryEvents/s.CanaryExposure)
			add(&baseline, i, s.BaselineEvents/s.BaselineExposure)
		}
	} else {
		for i, v := range data.Canary {
			add(&canary, i, v)
		}
		for i, v := range data.Baseline {
			add(&baseline, i, v)
		}
	}
	p := plot.New()
	p.Title.Text = fmt.Sprintf("%s: %s, canary and baseline (%s)", d.ID, m.Name, data.BaselineSource)
	p.Y.Label.Text = m.Name
	if m.Kind == detect.KindCount {
		p.Y.Label.Text += " (events / exposure)"
	}
	p.Add(plotter.NewGrid())
	p.Legend.Top = true
	for _, l := range []struct {
		name  string
		xys   plotter.XYs
		color color.Color
	}{
		{"canary", canary, color.RGBA{R: 0xff, G: 0x7f, B: 0x0e, A: 0xff}},
		{"baseline", baseline, color.Gray{Y: 0x55}},
	} {
		if len(l.xys) == 0 {
			continue
		}
		line, err := plotter.NewLine(l.xys)
		if err != nil {
			return nil, err
		}
		line.Color, line.Width = l.color, vg.Points(1.2)
		p.Add(line)
		p.Legend.Add(l.name, line)
	}
	p.Add(stageMarks(d))
	return p, nil
}

// stageMarks marks the deploy start and each stage.
func stageMarks(d *detect.Deployment) vmarks {
	marks := vmarks{xs: []float64{0}, labels: []string{"deploy"}}
	for i, st := range d.Stages {
		marks.xs = append(marks.xs, st.At.Sub(d.Start).Minutes())
		marks.labels = append(marks.labels, fmt.Sprintf("stage %d", i+1))
	}
	marks.style = draw.LineStyle{Color: color.RGBA{R: 0x2c, G: 0xa0, B: 0x2c, A: 0xff}, Width: vg.Points(1)}
	return marks
}

// metricPlot builds the chart. X is minutes since the start.
func metricPlot(d *detect.Deployment, m detect.Metric, history []detect.Verdict) (*plot.Plot, error) {
	var est, lo, hi plotter.XYs
	for _, v := range history {
		i := slices.IndexFunc(v.Metrics, func(mv detect.MetricVerdict) bool { return mv.Name == m.Name })
		if i < 0 {
			continue
		}
		x := v.At.Sub(d.Start).Minutes()
		e := v.Metrics[i].Effect
		// Unbounded or missing values (no events yet) are left out rather
		// than drawn at an arbitrary height.
		for _, s := range []struct {
			xys *plotter.XYs
			y   detect.Number
		}{{&est, e.Estimate}, {&lo, e.Lower}, {&hi, e.Upper}} {
			if y := float64(s.y); !math.IsNaN(y) && !math.IsInf(y, 0) {
				*s.xys = append(*s.xys, plotter.XY{X: x, Y: y})
			}
		}
	}

	p := plot.New()
	p.Title.Text = fmt.Sprintf("%s: %s, canary / baseline ratio", d.ID, m.Name)
	if len(est) == 0 {
		p.Title.Text += " (no estimate yet)"
	}
	p.X.Label.Text = "minutes since deploy start"
	p.Y.Label.Text = "canary / baseline"
	p.Add(plotter.NewGrid())
	p.Legend.Top = true

	bound := m.Boundary()
	ymin, ymax := math.Min(1, bound), math.Max(1, bound)
	xmax := 0.0
	for _, xy := range slices.Concat(est, lo) {
		ymin, ymax = math.Min(ymin, xy.Y), math.Max(ymax, xy.Y)
	}
	for _, xys := range []plotter.XYs{est, lo, hi} {
		for _, xy := range xys {
			xmax = math.Max(xmax, xy.X)
		}
	}
	// Early upper bounds can be huge; show them up to a scale where the
	// estimate and the boundary stay readable (lines are clipped).
	upperCap := ymax * 3
	for _, xy := range hi {
		ymax = math.Max(ymax, math.Min(xy.Y, upperCap))
	}

	lines := []struct {
		name  string
		xys   plotter.XYs
		color color.Color
		dash  bool
	}{
		{"estimate", est, color.RGBA{R: 0x1f, G: 0x77, B: 0xb4, A: 0xff}, false},
		{"confidence bounds", lo, color.RGBA{R: 0x1f, G: 0x77, B: 0xb4, A: 0xff}, true},
		{"", hi, color.RGBA{R: 0x1f, G: 0x77, B: 0xb4, A: 0xff}, true},
	}
	for _, l := range lines {
		if len(l.xys) == 0 {
			continue
		}
		line, err := plotter.NewLine(l.xys)
		if err != nil {
			return nil, err
		}
		line.Color = l.color
		line.Width = vg.Points(1.5)
		if l.dash {
			line.Dashes = []vg.Length{vg.Points(4), vg.Points(3)}
			line.Width = vg.Points(1)
		}
		p.Add(line)
		if l.name != "" {
			p.Legend.Add(l.name, line)
		}
	}

	tol := plotter.NewFunction(func(float64) float64 { return bound })
	tol.Color = color.RGBA{R: 0xd6, G: 0x27, B: 0x28, A: 0xff}
	tol.Dashes = []vg.Length{vg.Points(6), vg.Points(3)}
	p.Add(tol)
	p.Legend.Add(fmt.Sprintf("tolerance (%.3g)", bound), tol)
	same := plotter.NewFunction(func(float64) float64 { return 1 })
	same.Color = color.Gray{Y: 0x99}
	p.Add(same)

	marks := stageMarks(d)
	for _, x := range marks.xs {
		xmax = math.Max(xmax, x)
	}
	p.Add(marks)

	pad := (ymax - ymin) * 0.08
	if pad == 0 {
		pad = 0.1
	}
	p.Y.Min, p.Y.Max = math.Max(0, ymin-pad), ymax+pad
	p.X.Min, p.X.Max = math.Min(0, p.X.Min), math.Max(xmax, 1)
	return p, nil
}

// vmarks draws labelled vertical lines across the plot: the deploy start
// and each stage.
type vmarks struct {
	xs     []float64
	labels []string
	style  draw.LineStyle
}

// Plot implements plot.Plotter.
func (v vmarks) Plot(c draw.Canvas, p *plot.Plot) {
	trX, _ := p.Transforms(&c)
	sty := p.Legend.TextStyle
	sty.Color = v.style.Color
	sty.XAlign, sty.YAlign = draw.XLeft, draw.YTop
	for i, x := range v.xs {
		px := trX(x)
		if px < c.Min.X || px > c.Max.X {
			continue
		}
		c.StrokeLine2(v.style, px, c.Min.Y, px, c.Max.Y)
		c.FillText(sty, vg.Point{X: px + vg.Points(2), Y: c.Max.Y - vg.Points(2)}, v.labels[i])
	}
}

// DataRange implements plot.DataRanger: the marks widen the x axis to
// include them and leave the y axis to the data.
func (v vmarks) DataRange() (xmin, xmax, ymin, ymax float64) {
	xmin, xmax = math.Inf(1), math.Inf(-1)
	for _, x := range v.xs {
		xmin, xmax = math.Min(xmin, x), math.Max(xmax, x)
	}
	return xmin, xmax, math.Inf(1), math.Inf(-1)
}
