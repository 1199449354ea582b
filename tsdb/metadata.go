package tsdb

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"sync"

	"github.com/cockroachdb/pebble/v2"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/metadata"

	"github.com/immune-dev/immune/tsdb/internal/keys"
)

// metadataStore keeps the latest metadata (type, unit, help) per metric
// family in memory, persisted under keys.Metadata.
type metadataStore struct {
	mu       sync.RWMutex
	families map[string]metadata.Metadata
}

type metadataUpdate struct {
	family string
	m      metadata.Metadata
}

// storedMetadata is the persisted form of metadata.Metadata.
type storedMetadata struct {
	Type string `json:"type"`
	Unit string `json:"unit,omitempty"`
	Help string `json:"help,omitempty"`
}

func (ms *metadataStore) load(pdb *pebble.DB) error {
	ms.families = map[string]metadata.Metadata{}
	it, err := pdb.NewIter(&pebble.IterOptions{LowerBound: []byte{keys.PrefixMetadata}, UpperBound: []byte{keys.PrefixMetadata + 1}})
	if err != nil {
		return err
	}
	defer it.Close()
	for it.First(); it.Valid(); it.Next() {
		var sm storedMetadata
		val, err := it.ValueAndErr()
		if err != nil {
			return err
		}
		if err := json.Unmarshal(val, &sm); err != nil {
			return fmt.Errorf("metadata %q: %w", it.Key()[1:], err)
		}
		ms.families[string(it.Key()[1:])] = metadata.Metadata{Type: model.MetricType(sm.Type), Unit: sm.Unit, Help: sm.Help}
	}
	return it.Error()
}

// changed reports whether m differs from what is stored for family.
func (ms *metadataStore) changed(family string, m metadata.Metadata) bool {
	ms.mu.RLock()
	defer ms.mu.RUnlock()
	old, ok := ms.families[family]
	return !ok || old != m
}

// stage adds the updates to a batch.
func (ms *metadataStore) stage(b *pebble.Batch, updates []metadataUpdate) error {
	for _, u := range updates {
		val, err := json.Marshal(storedMetadata{Type: string(u.m.Type), Unit: u.m.Unit, Help: u.m.Help})
		if err != nil {
			return err
		}
		if err := b.Set(keys.Metadata(u.family), val, nil); err != nil {
			return err
		}
	}
	return nil
}

// apply records committed updates in memory.
func (ms *metadataStore) apply(updates []metadataUpdate) {
	if len(updates) == 0 {
		return
	}
	ms.mu.Lock()
	defer ms.mu.Unlock()
	for _, u := range updates {
		ms.families[u.family] = u.m
	}
}

// MetricMetadata returns the metadata per metric family, in the shape of
// Prometheus' /api/v1/metadata: metric "" means all families, limit <= 0 no
// limit on the number of families.
func (db *DB) MetricMetadata(_ context.Context, metric string, limit int) (map[string][]metadata.Metadata, error) {
	ms := &db.meta
	ms.mu.RLock()
	defer ms.mu.RUnlock()
	out := map[string][]metadata.Metadata{}
	if metric != "" {
		if m, ok := ms.families[metric]; ok {
			out[metric] = []metadata.Metadata{m}
		}
		return out, nil
	}
	names := make([]string, 0, len(ms.families))
	for name := range ms.families {
		names = append(names, name)
	}
	slices.Sort(names)
	for _, name := range names {
		if limit > 0 && len(out) >= limit {
			break
		}
		out[name] = []metadata.Metadata{ms.families[name]}
	}
	return out, nil
}

// metricFamily returns the family a series named name belongs to: the
// name itself, less the suffixes that histograms and summaries add.
func metricFamily(name string, m metadata.Metadata) string {
	switch m.Type {
	case model.MetricTypeHistogram, model.MetricTypeGaugeHistogram:
		for _, suffix := range []string{"_bucket", "_sum", "_count"} {
			if f, ok := strings.CutSuffix(name, suffix); ok {
				return f
			}
		}
	case model.MetricTypeSummary:
		for _, suffix := range []string{"_sum", "_count"} {
			if f, ok := strings.CutSuffix(name, suffix); ok {
				return f
			}
		}
	}
	return name
}
