package e2e

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sponsored/sponsor/pipeline"
	"github.com/sponsored/sponsor/schemas"
)

// fenceProducer takes the producer epoch of txnID, as a transaction
// coordinator does when it aborts a transaction that outlived its timeout
// (transaction.version 2 bumps the epoch then) or as a second process with
// the same transactional id would.
func fenceProducer(t *testing.T, c *cluster, txnID string) {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(c.brokers...), kgo.TransactionalID(txnID))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	if _, _, err := cl.ProducerID(testContext(t, 30*time.Second)); err != nil {
		t.Fatalf("fence %s: %v", txnID, err)
	}
}

// TestFencedProducerRejoins fences the instance's transactional producer
// mid-run. Once is what a broker failover can do to a healthy instance: it
// must take a new producer epoch, rejoin and go on, exactly once. Fenced
// again and again, someone else is using its transactional id: it must stop
// with an error that says so, not fence the other in turn for ever.
func TestFencedProducerRejoins(t *testing.T) {
	if testing.Short() {
		t.Skip("fencing: slow; skipped in -short mode")
	}
	sc := newScenario(scenarioConfig{Seed: 43, Users: 500, Businesses: 20, Interactions: 4000, Campaigns: 12})
	want, _ := expectedDeliveries(sc.Interactions, sc.Campaigns, defaultOracle)
	c := newCluster(t, "fence", 4)
	c.produceScenario(t, sc)
	const instance = "fence"
	txnID := c.group + "-" + instance
	dir := t.TempDir()
	mod := func(cfg *pipeline.Config) {
		cfg.MaxPollRecords = 50
		cfg.FanoutChunk = 20
		cfg.InstanceID = instance
	}
	h := startRunner(t, c, dir, mod)
	st := h.r.Stats()
	// waitFor polls cond (a polling interval, not an assertion on speed).
	waitFor := func(what string, cond func() bool) {
		t.Helper()
		for deadline := time.Now().Add(90 * time.Second); !cond(); time.Sleep(50 * time.Millisecond) {
			if err := h.alive(); err != nil {
				t.Fatalf("waiting for %s: the runner stopped: %v", what, err)
			}
			if time.Now().After(deadline) {
				t.Fatalf("waiting for %s: not within 90s", what)
			}
		}
	}
	waitFor("a tenth processed", func() bool { return st.Interactions.Load() >= int64(len(sc.Interactions)/10) })

	// Once: the runner takes a new epoch and goes on.
	fenceProducer(t, c, txnID)
	waitFor("a producer reset", func() bool { return st.ProducerResets.Load() == 1 })
	before := st.Transactions.Load()
	waitFor("commits after the reset", func() bool { return st.Transactions.Load() >= before+5 })
	t.Logf("fenced once: producer resets %d, transactions %d, aborts %d, interactions %d", st.ProducerResets.Load(), st.Transactions.Load(), st.Aborts.Load(), st.Interactions.Load())

	// Again and again: past maxFences (3) in the window, it stops. A fence
	// the client recovers from by itself (franz-go re-initializes the
	// producer after INVALID_PRODUCER_EPOCH on a produce under
	// transaction.version 1) is no reset: it goes on with the next fence.
	var fences, recovered int
	for deadline := time.Now().Add(2 * time.Minute); h.alive() == nil; {
		if time.Now().After(deadline) {
			t.Fatalf("fenced %d times in a row and still running; producer resets %d, fences the client recovered from %d", fences, st.ProducerResets.Load(), recovered)
		}
		n, done := st.ProducerResets.Load(), st.Interactions.Load()
		fenceProducer(t, c, txnID)
		fences++
		// An idle runner notices a fence only with its next transaction:
		// give it one, about a business no campaign targets (the oracle's
		// expectations do not change).
		last := sc.Interactions[len(sc.Interactions)-1]
		c.produce(t, c.interactionRecord(t, &schemas.Interaction{EventID: fmt.Sprintf("fence-poke-%d", fences),
			UserID: "fence-poke-user", BusinessID: "fence-poke-biz", Kind: schemas.UserMessage, OccurredAt: last.OccurredAt}))
		// Wait for the runner to reset, to process the poke or to stop.
		for w := time.Now().Add(60 * time.Second); h.alive() == nil && time.Now().Before(w); time.Sleep(20 * time.Millisecond) {
			if st.ProducerResets.Load() != n {
				break
			}
			if st.Interactions.Load() > done {
				recovered++
				break
			}
		}
	}
	err := h.alive()
	if !strings.Contains(err.Error(), "another instance") || !strings.Contains(err.Error(), instance) {
		t.Errorf("after %d fences in a row the runner stopped with %q; want an error naming another instance with id %q", fences, err, instance)
	}
	if got := st.ProducerResets.Load(); got != 3 {
		t.Errorf("producer resets before stopping: %d, want 3 (maxFences)", got)
	}
	h.err = nil // stopped as it should; the cleanup's stop must not report it
	t.Logf("fenced %d more times (%d recovered by the client): stopped with: %v", fences, recovered, err)

	// Started again on its state folder, it finishes the work exactly once.
	h = startRunner(t, c, dir, mod)
	c.waitSettled(t, campaignIDs(sc.Campaigns), 120*time.Second, h.alive)
	rep := c.checkInbox(t, sc, want)
	t.Logf("inbox records %d, deliveries %d, expected %d, duplicates %d, missing %d, extra %d, wrong %d",
		rep.Records, rep.Deliveries, rep.Expected, len(rep.Duplicates), len(rep.Missing), len(rep.Extra), len(rep.Wrong))
}
