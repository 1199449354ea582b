package opentsdb

import (
	"github.com/prometheus/prometheus/model/labels"
)

// metricLabel is the label holding an OpenTSDB metric name.
const metricLabel = labels.MetricName

// SeriesLabels returns the Prometheus labels of the OpenTSDB series metric
// {tags}: the label __name__ holds the metric name and each tag is a label
// of the same name and value, all unchanged (no character is replaced), so
// a series has the same identity whichever protocol wrote it. The result
// is sorted by label name. A tag named __name__ is ignored: OpenTSDB input
// carrying one is rejected before it gets here.
//
// sys.cpu.user{host=a} becomes {__name__="sys.cpu.user", host="a"}, which
// PromQL selects as {"sys.cpu.user", host="a"} (a UTF-8 metric name in
// Prometheus 3 terms).
func SeriesLabels(metric string, tags map[string]string) labels.Labels {
	ls := make([]labels.Label, 0, len(tags)+1)
	ls = append(ls, labels.Label{Name: metricLabel, Value: metric})
	for k, v := range tags {
		if k != metricLabel {
			ls = append(ls, labels.Label{Name: k, Value: v})
		}
	}
	return labels.New(ls...)
}

// MetricAndTags is the inverse of SeriesLabels: the value of __name__ and
// every other label as a tag.
func MetricAndTags(ls labels.Labels) (metric string, tags map[string]string) {
	tags = make(map[string]string, ls.Len())
	ls.Range(func(l labels.Label) {
		if l.Name == metricLabel {
			metric = l.Value
		} else {
			tags[l.Name] = l.Value
		}
	})
	return metric, tags
}
