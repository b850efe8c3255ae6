package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
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
	fenceFailover(t, "fence", true, "5m")
}

// BenchmarkFenceFailover measures, against a real Kafka (KAFKA_BROKERS;
// skipped on kfake, whose transaction timeouts this does not rely on), the
// time from the SIGKILL of an instance that leaves a transaction open
// (TestFailoverFencesDeadTransaction's setup, with the default
// --transaction-timeout 20s and --session-timeout 6s) until the survivor
// has settled the whole history, with the fence and with --no-fence, in the
// same run. Nothing here asserts a time.
//
//	KAFKA_BROKERS=127.0.0.1:29092 go test -run '^$' -bench FenceFailover -benchtime 1x ./e2e/
func BenchmarkFenceFailover(b *testing.B) {
	if os.Getenv("KAFKA_BROKERS") == "" {
		b.Skip("BenchmarkFenceFailover needs a real Kafka (KAFKA_BROKERS)")
	}
	for i := range b.N {
		b.StopTimer()
		with := fenceFailover(b, fmt.Sprintf("fence-bench%d", i), true, "20s")
		without := fenceFailover(b, fmt.Sprintf("nofence-bench%d", i), false, "20s")
		b.ReportMetric(with.Seconds(), "failover_fence_s")
		b.ReportMetric(without.Seconds(), "failover_nofence_s")
		b.ReportMetric(with.Seconds()/without.Seconds(), "ratio")
		b.StartTimer()
	}
}

// fenceFailover runs TestFailoverFencesDeadTransaction's scenario in the
// group and returns the time from the kill until the survivor settled.
func fenceFailover(t testing.TB, group string, fence bool, txnTimeout string) time.Duration {
	t.Helper()
	sc := newScenario(scenarioConfig{Seed: 71, Users: 2000, Businesses: 10, Interactions: 8000, Campaigns: 8})
	want, _ := expectedDeliveries(sc.Interactions, sc.Campaigns, defaultOracle)
	const parts = 4
	c := newCluster(t, group, parts)
	c.produceScenario(t, sc)
	dirs := map[string]string{"a": filepath.Join(t.TempDir(), "a"), "b": filepath.Join(t.TempDir(), "b")}
	g := startProcGroup(t, c, parts, []string{"a", "b"}, func(n string) string { return dirs[n] },
		"--transaction-timeout", txnTimeout, "--session-timeout", "6s", "--no-fence="+strconv.FormatBool(!fence))
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
	deadline = time.Now().Add(60 * time.Second)
	for sum(c.offsets(t, c.names.Inbox, false)) < int64(len(want))/4 {
		if err := g.alive(); err != nil {
			t.Fatal(err)
		}
		if time.Now().After(deadline) {
			t.Fatalf("the inbox did not reach %d records within 60s", len(want)/4)
		}
		time.Sleep(20 * time.Millisecond) // polling interval
	}
	victim := c.groupMembers(t)["a"]
	g.procs["a"].kill(t)
	kill := time.Now()

	// The dead instance's transaction, left open on its partitions.
	txnID := topics.Run{Prefix: c.prefix, Group: c.group}.TransactionalID("a")
	timeout, err := time.ParseDuration(txnTimeout)
	if err != nil {
		t.Fatal(err)
	}
	zombie, err := kgo.NewClient(kgo.SeedBrokers(c.brokers...), kgo.TransactionalID(txnID), kgo.TransactionTimeout(timeout),
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
	took := time.Since(kill)
	if n := scrapeCounters(metricsURL(b))["sponsor_fenced_transactions_total"]; fence && n < 1 {
		t.Errorf("b fenced %v transactions, want the dead instance's", n)
	}
	if err := zombie.EndTransaction(ctx, kgo.TryCommit); err == nil {
		t.Error("the dead instance's transaction committed after b took its partitions")
	}
	g.procs["b"].term(t)
	rep := c.checkInbox(t, sc, want)
	t.Logf("inbox records %d, deliveries %d, expected %d, duplicates %d, missing %d, extra %d", rep.Records, rep.Deliveries, rep.Expected,
		len(rep.Duplicates), len(rep.Missing), len(rep.Extra))
	t.Logf("fence %v: settled %s after the kill", fence, took.Round(time.Millisecond))
	return took
}
