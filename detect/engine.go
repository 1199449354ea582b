package detect

import (
	"context"
	"fmt"
	"time"

	"github.com/prometheus/prometheus/promql"
	"github.com/prometheus/prometheus/storage"
)

// EngineSource evaluates queries with a PromQL engine over a
// storage.Queryable: the local store.
type EngineSource struct {
	Engine    *promql.Engine
	Queryable storage.Queryable
}

// QueryRange implements Source.
func (s EngineSource) QueryRange(ctx context.Context, query string, start, end time.Time, step time.Duration) ([]Series, error) {
	q, err := s.Engine.NewRangeQuery(ctx, s.Queryable, nil, query, start, end, step)
	if err != nil {
		return nil, err
	}
	defer q.Close()
	res := q.Exec(ctx)
	if res.Err != nil {
		return nil, res.Err
	}
	switch v := res.Value.(type) {
	case promql.Matrix:
		out := make([]Series, 0, len(v))
		for _, s := range v {
			pts := make([]Point, len(s.Floats))
			for i, p := range s.Floats {
				pts[i] = Point{T: p.T, V: p.F}
			}
			out = append(out, Series{Labels: s.Metric, Points: pts})
		}
		return out, nil
	default:
		return nil, fmt.Errorf("range query returned %s, not a matrix", res.Value.Type())
	}
}
