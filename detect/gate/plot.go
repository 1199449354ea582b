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
	svg, err := plotMetric(d, *metric, history)
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

// plotMetric renders the chart as SVG.
func plotMetric(d *detect.Deployment, m detect.Metric, history []detect.Verdict) ([]byte, error) {
	p, err := metricPlot(d, m, history)
	if err != nil {
		return nil, err
	}
	c := vgsvg.New(8*vg.Inch, 4*vg.Inch)
	p.Draw(draw.New(c))
	var buf bytes.Buffer
	if _, err := c.WriteTo(&buf); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
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
	p.Title.Text = fmt.Sprintf("%s: %s, canary / baseline", d.ID, m.Name)
	if len(est) == 0 {
		p.Title.Text += " (no estimate yet)"
	}
	p.X.Label.Text = "minutes since deploy start"
	p.Y.Label.Text = "canary / baseline ratio"
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

	marks := vmarks{xs: []float64{0}, labels: []string{"deploy"}}
	for i, st := range d.Stages {
		x := st.At.Sub(d.Start).Minutes()
		marks.xs = append(marks.xs, x)
		marks.labels = append(marks.labels, fmt.Sprintf("stage %d", i+1))
		xmax = math.Max(xmax, x)
	}
	marks.style = draw.LineStyle{Color: color.RGBA{R: 0x2c, G: 0xa0, B: 0x2c, A: 0xff}, Width: vg.Points(1)}
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
