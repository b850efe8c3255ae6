package pipeline

import (
	"slices"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// TestStableWatch follows partitions through checks: an LSO that keeps up,
// one held by an open transaction, one that moves while still behind, one
// that catches up, and one the instance stops owning.
func TestStableWatch(t *testing.T) {
	in0, in1, inbox0 := stableKey{"interactions", 0}, stableKey{"interactions", 1}, stableKey{"inbox", 0}
	t0 := time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)
	var w stableWatch
	type check struct {
		at       time.Duration
		lso, hwm map[stableKey]int64
		want     []StableOffsets
	}
	for i, c := range []check{{
		// First sight: in1 is behind, but since when is unknown.
		at:  0,
		lso: map[stableKey]int64{in0: 10, in1: 5, inbox0: 7},
		hwm: map[stableKey]int64{in0: 10, in1: 9, inbox0: 7},
		want: []StableOffsets{
			{Topic: "inbox", Partition: 0},
			{Topic: "interactions", Partition: 0},
			{Topic: "interactions", Partition: 1, Behind: 4},
		},
	}, {
		// in1's LSO has not moved while more was written: stuck 2 s.
		// inbox0 is behind for the first time (its LSO moved: 7 -> 8).
		at:  2 * time.Second,
		lso: map[stableKey]int64{in0: 12, in1: 5, inbox0: 8},
		hwm: map[stableKey]int64{in0: 12, in1: 20, inbox0: 11},
		want: []StableOffsets{
			{Topic: "inbox", Partition: 0, Behind: 3},
			{Topic: "interactions", Partition: 0},
			{Topic: "interactions", Partition: 1, Behind: 15, Stuck: 2 * time.Second},
		},
	}, {
		// inbox0 stays at 8: stuck since the check it moved at. in1 still.
		at:  5 * time.Second,
		lso: map[stableKey]int64{in0: 12, in1: 5, inbox0: 8},
		hwm: map[stableKey]int64{in0: 12, in1: 20, inbox0: 11},
		want: []StableOffsets{
			{Topic: "inbox", Partition: 0, Behind: 3, Stuck: 3 * time.Second},
			{Topic: "interactions", Partition: 0},
			{Topic: "interactions", Partition: 1, Behind: 15, Stuck: 5 * time.Second},
		},
	}, {
		// in1's transaction aborted: its LSO moved, still behind (another
		// one open): the clock starts again. inbox0 caught up.
		at:  7 * time.Second,
		lso: map[stableKey]int64{in0: 12, in1: 18, inbox0: 11},
		hwm: map[stableKey]int64{in0: 12, in1: 21, inbox0: 11},
		want: []StableOffsets{
			{Topic: "inbox", Partition: 0},
			{Topic: "interactions", Partition: 0},
			{Topic: "interactions", Partition: 1, Behind: 3},
		},
	}, {
		// in1 is no longer owned (and a partition listed with no HWM is
		// left out).
		at:   9 * time.Second,
		lso:  map[stableKey]int64{in0: 12, inbox0: 11},
		hwm:  map[stableKey]int64{inbox0: 11},
		want: []StableOffsets{{Topic: "inbox", Partition: 0}},
	}, {
		// in1 owned again, still at 18: it starts afresh, not 4 s stuck.
		at:  11 * time.Second,
		lso: map[stableKey]int64{in1: 18, inbox0: 11},
		hwm: map[stableKey]int64{in1: 21, inbox0: 11},
		want: []StableOffsets{
			{Topic: "inbox", Partition: 0},
			{Topic: "interactions", Partition: 1, Behind: 3},
		},
	}} {
		got := w.observe(t0.Add(c.at), c.lso, c.hwm)
		if !slices.Equal(got, c.want) {
			t.Errorf("check %d (at %s):\n got %+v\nwant %+v", i, c.at, got, c.want)
		}
	}
}

// TestStableMetrics checks the gauges Stats.Stable is exported as: one
// series per topic and partition, none before the first check.
func TestStableMetrics(t *testing.T) {
	var s Stats
	reg := prometheus.NewPedanticRegistry()
	if err := s.Register(reg); err != nil {
		t.Fatal(err)
	}
	if m := gather(t, reg); m["sponsor_lso_behind_hwm_records"] != nil {
		t.Errorf("sponsor_lso_behind_hwm_records exported before any check: %v", m["sponsor_lso_behind_hwm_records"])
	}
	s.setStable([]StableOffsets{
		{Topic: "inbox", Partition: 2, Behind: 0},
		{Topic: "interactions", Partition: 2, Behind: 7, Stuck: 90 * time.Second},
	})
	m := gather(t, reg)
	got := map[string]float64{}
	for _, name := range []string{"sponsor_lso_behind_hwm_records", "sponsor_lso_stuck_seconds"} {
		for _, s := range m[name].GetMetric() {
			labels := map[string]string{}
			for _, l := range s.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			got[name+"/"+labels["topic"]+"/"+labels["partition"]] = s.GetGauge().GetValue()
		}
	}
	want := map[string]float64{
		"sponsor_lso_behind_hwm_records/inbox/2":        0,
		"sponsor_lso_behind_hwm_records/interactions/2": 7,
		"sponsor_lso_stuck_seconds/inbox/2":             0,
		"sponsor_lso_stuck_seconds/interactions/2":      90,
	}
	if len(got) != len(want) {
		t.Errorf("series %v, want %v", got, want)
	}
	for k, v := range want {
		if g, ok := got[k]; !ok || g != v {
			t.Errorf("%s = %v (exported %v), want %v", k, g, ok, v)
		}
	}
}
