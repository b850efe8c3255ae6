package e2e

import (
	"net/http/httptest"
	"strconv"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sponsored/sponsor/schemas"
)

// TestStuckTransactionMetrics leaves a transaction open on an interactions
// partition, from a second producer, while the pipeline runs: the lag
// computed from the last stable offset stays at zero (it cannot see past
// the open transaction), while sponsor_lso_behind_hwm_records shows the
// records held back and sponsor_lso_stuck_seconds grows; once the
// transaction ends, both go back to zero.
func TestStuckTransactionMetrics(t *testing.T) {
	c := newCluster(t, "stuck-metrics", 2)
	reg := prometheus.NewRegistry()
	h := startRunnerMetrics(t, c, t.TempDir(), nil, reg)
	srv := httptest.NewServer(h.r.Handler(reg))
	defer srv.Close()
	ctx := testContext(t, 2*time.Minute)
	for !h.r.Ready() {
		if err := h.alive(); err != nil {
			t.Fatalf("runner stopped before it was ready: %v", err)
		}
		if ctx.Err() != nil {
			t.Fatal("runner not ready within 2 minutes")
		}
		time.Sleep(50 * time.Millisecond)
	}

	// The stuck producer: transactional, with a timeout longer than the
	// test, so that nothing but this test ends its transaction.
	stuck, err := kgo.NewClient(kgo.SeedBrokers(c.brokers...), kgo.TransactionalID(c.prefix+"stuck-metrics-producer"),
		kgo.TransactionTimeout(5*time.Minute), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	if err != nil {
		t.Fatal(err)
	}
	defer stuck.Close()
	if err := stuck.BeginTransaction(); err != nil {
		t.Fatal(err)
	}
	in := schemas.Interaction{EventID: "ev-stuck", UserID: "user-stuck", BusinessID: "biz-stuck", Kind: schemas.UserMessage,
		OccurredAt: time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)}
	rec := c.interactionRecord(t, &in)
	rec.Partition = 1
	if err := stuck.ProduceSync(ctx, rec).FirstErr(); err != nil {
		t.Fatalf("produce in the open transaction: %v", err)
	}
	const topicLabel, partLabel = "topic", "partition"
	p := strconv.Itoa(int(rec.Partition))

	// Behind and stuck: at least two checks saw the same LSO below the
	// HWM.
	var m metrics
	for {
		m = scrape(t, srv.URL)
		behind, _ := m.value("sponsor_lso_behind_hwm_records", topicLabel, c.names.Interactions, partLabel, p)
		secs, _ := m.value("sponsor_lso_stuck_seconds", topicLabel, c.names.Interactions, partLabel, p)
		if behind >= 1 && secs > 0 {
			break
		}
		if err := h.alive(); err != nil {
			t.Fatalf("runner stopped: %v", err)
		}
		if ctx.Err() != nil {
			t.Fatalf("sponsor_lso_behind_hwm_records = %v, sponsor_lso_stuck_seconds = %v for %s/%s; want >= 1 and > 0 while a transaction is open there",
				behind, secs, c.names.Interactions, p)
		}
		time.Sleep(200 * time.Millisecond)
	}
	if lag, ok := m.value("sponsor_lag_records"); !ok || lag != 0 {
		t.Errorf("sponsor_lag_records = %v (exported %v), want 0: the LSO hides the open transaction's record", lag, ok)
	}
	for _, topic := range []string{c.names.Interactions, c.names.Inbox, c.names.Changelog, c.names.Decisions} {
		for part := range c.parts {
			if _, ok := m.value("sponsor_lso_behind_hwm_records", topicLabel, topic, partLabel, strconv.Itoa(int(part))); !ok {
				t.Errorf("sponsor_lso_behind_hwm_records{topic=%q, partition=%d} not exported", topic, part)
			}
		}
	}
	if other, _ := m.value("sponsor_lso_behind_hwm_records", topicLabel, c.names.Interactions, partLabel, "0"); other != 0 {
		t.Errorf("sponsor_lso_behind_hwm_records for %s/0 = %v, want 0 (no transaction open there)", c.names.Interactions, other)
	}

	if err := stuck.EndTransaction(ctx, kgo.TryAbort); err != nil {
		t.Fatalf("abort the open transaction: %v", err)
	}
	for {
		m = scrape(t, srv.URL)
		behind, _ := m.value("sponsor_lso_behind_hwm_records", topicLabel, c.names.Interactions, partLabel, p)
		secs, _ := m.value("sponsor_lso_stuck_seconds", topicLabel, c.names.Interactions, partLabel, p)
		if behind == 0 && secs == 0 {
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("after the abort: sponsor_lso_behind_hwm_records = %v, sponsor_lso_stuck_seconds = %v, want 0 and 0", behind, secs)
		}
		time.Sleep(200 * time.Millisecond)
	}
}
