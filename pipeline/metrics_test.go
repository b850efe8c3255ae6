package pipeline

import (
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sponsored/sponsor/policy"
	"github.com/sponsored/sponsor/schemas"
	"github.com/sponsored/sponsor/state"
)

// TestStateMetrics: the runner's registry exports the store's Pebble
// metrics while the store is open, with values that follow the store
// (tables after a flush, the cache's capacity), and nothing once it closes.
func TestStateMetrics(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "pebble")
	store, err := state.Open(dir, state.Options{CacheSize: 64 << 20})
	if err != nil {
		t.Fatal(err)
	}
	c := policy.Contact{}
	c.Apply(schemas.UserMessage, policy.Millis(time.Date(2026, 3, 1, 10, 0, 0, 0, time.UTC).UnixMilli()))
	b := store.NewBatch(0)
	for _, u := range []string{"u1", "u2", "u3"} {
		if err := b.PutContact(u, "biz-a", &c, false); err != nil {
			t.Fatal(err)
		}
	}
	if err := b.Commit(3); err != nil {
		t.Fatal(err)
	}
	// Close flushes the memtable: the reopened store has a table in L0.
	if err := store.Close(); err != nil {
		t.Fatal(err)
	}
	if store, err = state.Open(dir, state.Options{CacheSize: 64 << 20}); err != nil {
		t.Fatal(err)
	}
	defer store.Close()

	reg := prometheus.NewRegistry()
	r := &Runner{}
	if err := r.Register(reg); err != nil {
		t.Fatal(err)
	}
	if n := countState(t, reg); n != 0 {
		t.Errorf("before the store is open: %d sponsor_state_* series, want none", n)
	}
	r.view.set(store)
	if _, err := store.Checkpoint(0); err != nil { // a read of the flushed table: through the cache
		t.Fatal(err)
	}
	if got := valueOf(t, reg, "sponsor_state_block_cache_misses_total", "") + valueOf(t, reg, "sponsor_state_block_cache_hits_total", ""); got < 1 {
		t.Errorf("block cache hits + misses = %v after a read of a flushed table, want > 0", got)
	}
	if got := valueOf(t, reg, "sponsor_state_block_cache_capacity_bytes", ""); got != 64<<20 {
		t.Errorf("sponsor_state_block_cache_capacity_bytes = %v, want %d", got, 64<<20)
	}
	if got := valueOf(t, reg, "sponsor_state_level_tables", "0"); got < 1 {
		t.Errorf("sponsor_state_level_tables{level=\"0\"} = %v, want at least the flushed table", got)
	}
	if got := valueOf(t, reg, "sponsor_state_disk_bytes", ""); got <= 0 {
		t.Errorf("sponsor_state_disk_bytes = %v, want > 0", got)
	}
	r.view.set(nil)
	if n := countState(t, reg); n != 0 {
		t.Errorf("after the store closed: %d sponsor_state_* series, want none", n)
	}
}

// countState counts the sponsor_state_* series reg gathers.
func countState(t *testing.T, reg *prometheus.Registry) int {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, mf := range mfs {
		if strings.HasPrefix(mf.GetName(), "sponsor_state_") {
			n += len(mf.GetMetric())
		}
	}
	return n
}

// valueOf returns the value of the series of name (with the label
// level=level, if level is not empty) that reg gathers.
func valueOf(t *testing.T, reg *prometheus.Registry, name, level string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			matches := level == ""
			for _, l := range m.GetLabel() {
				matches = matches || (l.GetName() == "level" && l.GetValue() == level)
			}
			if matches {
				return m.GetGauge().GetValue() + m.GetCounter().GetValue()
			}
		}
	}
	t.Fatalf("%s{level=%q}: not gathered", name, level)
	return 0
}
