package pipeline

import (
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/sponsored/sponsor/deadletter"
)

// gather returns the metric families of reg by name.
func gather(t *testing.T, reg prometheus.Gatherer) map[string]*dto.MetricFamily {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]*dto.MetricFamily{}
	for _, mf := range mfs {
		out[mf.GetName()] = mf
	}
	return out
}

// TestStatsMetrics checks the metrics Register exports that need more than
// an atomic counter: dead letters by reason (every known reason exported
// from the start), the restore gauges and the fan-out and restore
// histograms.
func TestStatsMetrics(t *testing.T) {
	var s Stats
	reg := prometheus.NewPedanticRegistry()
	if err := s.Register(reg); err != nil {
		t.Fatal(err)
	}
	var c counts
	c.deadLetter(deadletter.ReasonMisroutedKey)
	c.deadLetter(deadletter.ReasonMisroutedKey)
	c.deadLetter("something-new")
	s.add(&c)
	s.restoreProgress(RestoreProgress{Partition: 0, From: 0, Next: 10, End: 100})
	s.restoreProgress(RestoreProgress{Partition: 3, From: 5, Next: 5, End: 25})
	s.RestoringPartitions.Add(2)
	s.observeFanout(0, time.Second)
	s.observeFanout(12, 2*time.Second)

	if got := s.DeadLetters.Load(); got != 3 {
		t.Errorf("DeadLetters = %d, want 3", got)
	}
	m := gather(t, reg)
	dls := map[string]float64{}
	for _, s := range m["sponsor_deadletters_total"].GetMetric() {
		dls[s.GetLabel()[0].GetValue()] = s.GetCounter().GetValue()
	}
	if len(dls) != len(deadletter.Reasons())+1 {
		t.Errorf("sponsor_deadletters_total has %d series (%v), want every known reason and the new one", len(dls), dls)
	}
	for r, want := range map[deadletter.Reason]float64{deadletter.ReasonMisroutedKey: 2, "something-new": 1, deadletter.ReasonEmptyUserID: 0} {
		if got, ok := dls[string(r)]; !ok || got != want {
			t.Errorf("sponsor_deadletters_total{reason=%q} = %v (exported %v), want %v", r, got, ok, want)
		}
	}
	gauge := func(m map[string]*dto.MetricFamily, name string) float64 {
		return m[name].GetMetric()[0].GetGauge().GetValue()
	}
	if got := gauge(m, "sponsor_restore_records_remaining"); got != 110 {
		t.Errorf("sponsor_restore_records_remaining = %v, want 90+20", got)
	}
	if got := gauge(m, "sponsor_restoring_partitions"); got != 2 {
		t.Errorf("sponsor_restoring_partitions = %v, want 2", got)
	}
	h := m["sponsor_fanout_size"].GetMetric()[0].GetHistogram()
	if b := h.GetBucket()[0]; h.GetSampleCount() != 2 || h.GetSampleSum() != 12 || b.GetUpperBound() != 0 || b.GetCumulativeCount() != 1 {
		t.Errorf("sponsor_fanout_size: count %d, sum %v, first bucket %v; want 2, 12, le=0 holding 1", h.GetSampleCount(), h.GetSampleSum(), b)
	}
	if h := m["sponsor_fanout_seconds"].GetMetric()[0].GetHistogram(); h.GetSampleCount() != 2 || h.GetSampleSum() != 3 {
		t.Errorf("sponsor_fanout_seconds: count %d, sum %v; want 2, 3", h.GetSampleCount(), h.GetSampleSum())
	}

	s.restoreEnded(0, 3*time.Second)
	s.restoreEnded(3, 0) // failed or interrupted: not observed
	s.RestoringPartitions.Add(-2)
	m = gather(t, reg)
	if got := gauge(m, "sponsor_restore_records_remaining"); got != 0 {
		t.Errorf("sponsor_restore_records_remaining = %v after the restores ended, want 0", got)
	}
	if got := gauge(m, "sponsor_restoring_partitions"); got != 0 {
		t.Errorf("sponsor_restoring_partitions = %v after the restores ended, want 0", got)
	}
	if h := m["sponsor_restore_seconds"].GetMetric()[0].GetHistogram(); h.GetSampleCount() != 1 || h.GetSampleSum() != 3 {
		t.Errorf("sponsor_restore_seconds: count %d, sum %v; want 1, 3", h.GetSampleCount(), h.GetSampleSum())
	}
}
