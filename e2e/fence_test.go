package e2e

import (
	"path/filepath"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sponsored/sponsor/topics"
)

// TestFailoverFencesDeadTransaction runs instances a and b of one group
// with a transaction timeout far longer than the test's deadlines
// (--transaction-timeout 5m), SIGKILLs a for good in the middle of the
// history and leaves a transaction of a's transactional id open on a's
// inbox and changelog partitions, as a SIGKILL between produce and commit
// does (the test's own client opens it after the kill: the kill itself
// does not reliably leave one open). b must fence it when it takes a's
// partitions: the group settles and the inbox is exactly the oracle's well
// before the 5 minutes the open transaction would otherwise hold the
// partitions, and b counts the fence.
func TestFailoverFencesDeadTransaction(t *testing.T) {
	if testing.Short() {
		t.Skip("failover test: slow; skipped in -short mode")
	}
	sc := newScenario(scenarioConfig{Seed: 71, Users: 2000, Businesses: 10, Interactions: 8000, Campaigns: 8})
	want, _ := expectedDeliveries(sc.Interactions, sc.Campaigns, defaultOracle)
	const parts = 4
	c := newCluster(t, "fence", parts)
	c.produceScenario(t, sc)
	dirs := map[string]string{"a": filepath.Join(t.TempDir(), "a"), "b": filepath.Join(t.TempDir(), "b")}
	g := startProcGroup(t, c, parts, []string{"a", "b"}, func(n string) string { return dirs[n] }, "--transaction-timeout", "5m")
	deadline := time.Now().Add(60 * time.Second)
	for {
		m := c.groupMembers(t)
		if len(m["a"]) == 2 && len(m["b"]) == 2 {
			break
		}
		if err := g.alive(); err != nil {
			t.Fatal(err)
		}
		if time.Now().After(deadline) {
			t.Fatalf("not two partitions each within 60s: group %v", m)
		}
		time.Sleep(50 * time.Millisecond) // polling interval
	}
	waitInbox(t, c, g, int64(len(want))/4)
	victim := c.groupMembers(t)["a"]
	g.procs["a"].kill(t)

	// The dead instance's transaction, left open on its partitions.
	txnID := topics.Run{Prefix: c.prefix, Group: c.group}.TransactionalID("a")
	zombie, err := kgo.NewClient(kgo.SeedBrokers(c.brokers...), kgo.TransactionalID(txnID), kgo.TransactionTimeout(5*time.Minute),
		kgo.RecordPartitioner(kgo.ManualPartitioner()))
	if err != nil {
		t.Fatal(err)
	}
	defer zombie.Close()
	if err := zombie.BeginTransaction(); err != nil {
		t.Fatal(err)
	}
	ctx := testContext(t, time.Minute)
	for _, p := range victim {
		for _, topic := range []string{c.names.Inbox, c.names.Changelog} {
			if err := zombie.ProduceSync(ctx, &kgo.Record{Topic: topic, Partition: p, Key: []byte("zombie"), Value: []byte("zombie")}).FirstErr(); err != nil {
				t.Fatalf("the zombie's produce to %s/%d: %v", topic, p, err)
			}
		}
	}

	b := g.procs["b"]
	c.waitSettled(t, campaignIDs(sc.Campaigns), 120*time.Second, b.exited)
	if n := scrapeCounters(metricsURL(b))["sponsor_fenced_transactions_total"]; n < 1 {
		t.Errorf("b fenced %v transactions, want the dead instance's", n)
	}
	if err := zombie.EndTransaction(ctx, kgo.TryCommit); err == nil {
		t.Error("the dead instance's transaction committed after b took its partitions")
	}
	g.procs["b"].term(t)
	rep := c.checkInbox(t, sc, want)
	t.Logf("inbox records %d, deliveries %d, expected %d, duplicates %d, missing %d, extra %d", rep.Records, rep.Deliveries, rep.Expected,
		len(rep.Duplicates), len(rep.Missing), len(rep.Extra))
}
