package e2e

import (
	"fmt"
	"math"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sponsored/sponsor/deadletter"
	"github.com/sponsored/sponsor/pipeline"
	"github.com/sponsored/sponsor/schemas"
)

// scrape reads the runner's /metrics from url.
func scrape(t testing.TB, url string) metrics {
	t.Helper()
	resp, err := http.Get(url + "/metrics")
	if err != nil {
		t.Fatalf("GET /metrics: %v", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /metrics: %s", resp.Status)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	mfs, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("parse /metrics: %v", err)
	}
	return mfs
}

// metrics is a scrape: metric families by name.
type metrics map[string]*dto.MetricFamily

// series returns the series of metric name whose labels include labels
// (name=value pairs).
func (m metrics) series(name string, labels ...string) []*dto.Metric {
	mf := m[name]
	if mf == nil {
		return nil
	}
	var out []*dto.Metric
	for _, s := range mf.GetMetric() {
		have := map[string]string{}
		for _, lp := range s.GetLabel() {
			have[lp.GetName()] = lp.GetValue()
		}
		ok := true
		for i := 0; i+1 < len(labels); i += 2 {
			ok = ok && have[labels[i]] == labels[i+1]
		}
		if ok {
			out = append(out, s)
		}
	}
	return out
}

// value returns the sum of the matching series of a counter or gauge, and
// whether there is one.
func (m metrics) value(name string, labels ...string) (float64, bool) {
	ss := m.series(name, labels...)
	var v float64
	for _, s := range ss {
		v += s.GetCounter().GetValue() + s.GetGauge().GetValue() + s.GetUntyped().GetValue()
	}
	return v, len(ss) > 0
}

// histogram returns the sample count and sum of a histogram (summed over
// its matching series), and the cumulative count of its bucket le.
func (m metrics) histogram(name string, le float64, labels ...string) (count uint64, sum float64, bucket uint64) {
	for _, s := range m.series(name, labels...) {
		h := s.GetHistogram()
		count += h.GetSampleCount()
		sum += h.GetSampleSum()
		for _, b := range h.GetBucket() {
			if b.GetUpperBound() == le {
				bucket += b.GetCumulativeCount()
			}
		}
	}
	return count, sum, bucket
}

// TestMetrics runs the pipeline on a small scenario with a few bad records
// and a campaign, and checks what its /metrics says against what it did:
// deliveries against the inbox, dead letters by reason against the bad
// records produced, one fan-out observation per (campaign, task), the Kafka
// client metrics, and the restore metrics, then again after a restart that
// lost the state folder (a restore from the changelog).
func TestMetrics(t *testing.T) {
	c := newCluster(t, "metrics", 3)
	send := time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)
	biz := "biz-metrics"
	camp := schemas.Campaign{CampaignID: "camp-metrics", BusinessID: biz, Action: schemas.Launch, SendAt: send, ExpiresAt: send.Add(time.Hour),
		Message: schemas.Message{Text: "hello"}}
	c.produce(t, c.campaignRecord(t, &camp))

	interaction := func(u string, h int) schemas.Interaction {
		return schemas.Interaction{EventID: "ev-" + u, UserID: u, BusinessID: biz, Kind: schemas.UserMessage, OccurredAt: send.Add(time.Duration(-h) * time.Hour)}
	}
	// Bad records first: two on the wrong partition for their user (key
	// is not the user_id), one that is not in the registry's wire format.
	var recs []*kgo.Record
	for i := range 2 {
		in := interaction(fmt.Sprintf("misrouted-%d", i), 9)
		r := c.interactionRecord(t, &in)
		r.Key = fmt.Appendf(nil, "someone-else-%d", i)
		recs = append(recs, r)
	}
	recs = append(recs, &kgo.Record{Topic: c.names.Interactions, Key: []byte("not-avro"), Value: []byte(`{"user_id":"not-avro"}`)})
	wantDL := map[deadletter.Reason]float64{deadletter.ReasonMisroutedKey: 2, deadletter.ReasonNotWireFormat: 1}
	nbad := len(recs)
	// Then contacts of the business on every partition.
	var good []schemas.Interaction
	for i := range 30 {
		in := interaction(fmt.Sprintf("user-%02d", i), 8-i/4)
		good = append(good, in)
		recs = append(recs, c.interactionRecord(t, &in))
	}
	c.produce(t, recs...)
	perPart := map[int32]int{}
	for _, r := range recs[nbad:] {
		perPart[r.Partition]++
	}
	if len(perPart) != int(c.parts) {
		t.Fatalf("contacts on partitions %v, want every one of %d: the fan-out size check needs a candidate on each", perPart, c.parts)
	}

	reg := prometheus.NewRegistry()
	h := startRunnerMetrics(t, c, t.TempDir(), nil, reg)
	srv := httptest.NewServer(h.r.Handler(reg))
	defer srv.Close()

	sc := scenario{Campaigns: []schemas.Campaign{camp}, Interactions: good}
	want, _ := expectedDeliveries(good, sc.Campaigns, defaultOracle)
	c.waitSettled(t, campaignIDs(sc.Campaigns), 60*time.Second, h.alive)
	rep := c.checkInbox(t, sc, want)
	if rep.Records == 0 || rep.Records != len(want) {
		t.Fatalf("inbox has %d records, the oracle wants %d (> 0)", rep.Records, len(want))
	}

	// The counters move right after the commit the changelog shows: wait
	// for them.
	var m metrics
	for deadline := time.Now().Add(15 * time.Second); ; {
		m = scrape(t, srv.URL)
		d, _ := m.value("sponsor_deliveries_total")
		dl, _ := m.value("sponsor_deadletters_total")
		n, _, _ := m.histogram("sponsor_fanout_size", 0)
		if d == float64(rep.Records) && dl == float64(nbad) && n == uint64(c.parts) || time.Now().After(deadline) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}

	if got, _ := m.value("sponsor_deliveries_total"); got != float64(rep.Records) {
		t.Errorf("sponsor_deliveries_total = %v, want %d (the inbox's records)", got, rep.Records)
	}
	var total float64
	for _, r := range deadletter.Reasons() {
		got, ok := m.value("sponsor_deadletters_total", "reason", string(r))
		if !ok {
			t.Errorf("sponsor_deadletters_total{reason=%q} is not exported", r)
		}
		if got != wantDL[r] {
			t.Errorf("sponsor_deadletters_total{reason=%q} = %v, want %v", r, got, wantDL[r])
		}
		total += got
	}
	if dls := len(c.readAll(t, c.names.DeadLetter)); total != float64(dls) || dls != 3 {
		t.Errorf("sponsor_deadletters_total sums to %v; the dead-letter topic has %d records; want 3", total, dls)
	}

	// One fan-out per (campaign, task), each with candidates: none in the
	// le="0" bucket; together they decided about every contact.
	n, size, empty := m.histogram("sponsor_fanout_size", 0)
	if n != uint64(len(sc.Campaigns))*uint64(c.parts) || empty != 0 {
		t.Errorf("sponsor_fanout_size: %d observations (%d with no candidate), want %d, each > 0", n, empty, len(sc.Campaigns)*int(c.parts))
	}
	decided, _ := m.value("sponsor_deliveries_total")
	sup, _ := m.value("sponsor_suppressions_total")
	if size != decided+sup || size < float64(len(good)) {
		t.Errorf("sponsor_fanout_size_sum = %v, want deliveries + suppressions = %v, at least the %d contacts", size, decided+sup, len(good))
	}
	if n, secs, _ := m.histogram("sponsor_fanout_seconds", 0); n != uint64(c.parts) || secs <= 0 {
		t.Errorf("sponsor_fanout_seconds: %d observations summing to %vs, want %d, > 0", n, secs, c.parts)
	}
	if got, _ := m.value("sponsor_campaigns_fired_total"); got != float64(c.parts) {
		t.Errorf("sponsor_campaigns_fired_total = %v, want %d", got, c.parts)
	}

	// Each committed transaction is timed by phase (a transaction may commit
	// between the two series' reads: a sweep's, say).
	txns, _ := m.value("sponsor_transactions_total")
	for _, phase := range []string{"process", "produce", "flush", "end"} {
		if n, secs, _ := m.histogram("sponsor_transaction_phase_seconds", 0, "phase", phase); n == 0 || math.Abs(float64(n)-txns) > 1 || secs < 0 {
			t.Errorf("sponsor_transaction_phase_seconds{phase=%q}: %d observations summing to %vs, want one per committed transaction (%v)", phase, n, secs, txns)
		}
	}

	// The state store's Pebble metrics, while the runner is up.
	if got, ok := m.value("sponsor_state_block_cache_capacity_bytes"); !ok || got != 128<<20 {
		t.Errorf("sponsor_state_block_cache_capacity_bytes = %v (exported: %v), want the default 128 MiB", got, ok)
	}
	if got, ok := m.value("sponsor_state_memtables"); !ok || got < 1 {
		t.Errorf("sponsor_state_memtables = %v (exported: %v), want at least the one being written", got, ok)
	}

	// The Kafka clients' metrics (kprom), by client.
	if got, _ := m.value("sponsor_kafka_produce_records_total", "client", pipeline.ClientSession, "topic", c.names.Inbox); got < float64(rep.Records) {
		t.Errorf("sponsor_kafka_produce_records_total{client=session, topic=inbox} = %v, want at least the %d inbox records", got, rep.Records)
	}
	if got, _ := m.value("sponsor_kafka_produce_records_total", "client", pipeline.ClientSession, "topic", c.names.DeadLetter); got < 3 {
		t.Errorf("sponsor_kafka_produce_records_total{client=session, topic=deadletter} = %v, want at least 3", got)
	}
	if got, _ := m.value("sponsor_kafka_fetch_records_total", "client", pipeline.ClientSession, "topic", c.names.Interactions); got < float64(len(recs)) {
		t.Errorf("sponsor_kafka_fetch_records_total{client=session, topic=interactions} = %v, want at least %d", got, len(recs))
	}
	if got, _ := m.value("sponsor_kafka_fetch_records_total", "client", pipeline.ClientCampaigns); got < 1 {
		t.Errorf("sponsor_kafka_fetch_records_total{client=campaigns} = %v, want > 0", got)
	}
	if got, _ := m.value("sponsor_kafka_write_bytes_total", "client", pipeline.ClientAdmin); got <= 0 {
		t.Errorf("sponsor_kafka_write_bytes_total{client=admin} = %v, want > 0", got)
	}

	// Restores: one per partition (the changelog was empty), finished.
	checkRestored := func(m metrics) {
		t.Helper()
		if got, ok := m.value("sponsor_restoring_partitions"); !ok || got != 0 {
			t.Errorf("sponsor_restoring_partitions = %v (exported %v), want 0 once restored", got, ok)
		}
		if got, ok := m.value("sponsor_restore_records_remaining"); !ok || got != 0 {
			t.Errorf("sponsor_restore_records_remaining = %v (exported %v), want 0 once restored", got, ok)
		}
		if n, _, _ := m.histogram("sponsor_restore_seconds", 0); n != uint64(c.parts) {
			t.Errorf("sponsor_restore_seconds: %d observations, want one per partition (%d)", n, c.parts)
		}
	}
	checkRestored(m)
	h.stop(t)

	// A restart that lost its state folder restores it from the changelog.
	reg2 := prometheus.NewRegistry()
	h2 := startRunnerMetrics(t, c, t.TempDir(), nil, reg2)
	srv2 := httptest.NewServer(h2.r.Handler(reg2))
	defer srv2.Close()
	for deadline := time.Now().Add(60 * time.Second); !h2.r.Ready(); {
		if err := h2.alive(); err != nil {
			t.Fatalf("restarted runner stopped: %v", err)
		}
		if time.Now().After(deadline) {
			t.Fatal("restarted runner not ready within 60s")
		}
		time.Sleep(50 * time.Millisecond)
	}
	m2 := scrape(t, srv2.URL)
	checkRestored(m2)
	if got, _ := m2.value("sponsor_restored_records_total"); got <= 0 {
		t.Errorf("sponsor_restored_records_total = %v after restoring from the changelog, want > 0", got)
	}
	if got, _ := m2.value("sponsor_deliveries_total"); got != 0 {
		t.Errorf("sponsor_deliveries_total = %v after the restart, want 0 (nothing new to send)", got)
	}
	if n, _, _ := m2.histogram("sponsor_fanout_size", 0); n != 0 {
		t.Errorf("sponsor_fanout_size: %d observations after the restart, want 0 (the fan-outs finished before)", n)
	}
	if t.Failed() {
		var names []string
		for _, mf := range m {
			names = append(names, mf.GetName()+"="+strconv.Itoa(len(mf.GetMetric())))
		}
		t.Logf("first scrape: %v", slices.Sorted(slices.Values(names)))
	}
}
