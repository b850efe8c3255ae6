package e2e

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// TestGroupOfThreeRandomKills runs three instances of one group and, round
// after round, SIGKILLs a random one at a random moment (in the middle of
// transactions, fan-outs and the rebalances the previous kill started) and
// restarts it, sometimes with its state folder deleted. The inbox must end
// up exactly the oracle's.
//
// Its deadlines are what the group achieves now with a margin, and under
// the 60-70 s a wedged group took on kfake with dynamic members (issue 15),
// so that such a stall fails the test instead of passing slowly.
func TestGroupOfThreeRandomKills(t *testing.T) {
	if testing.Short() {
		t.Skip("group kill test: slow; skipped in -short mode")
	}
	randomKills(t, uint64(time.Now().UnixNano()))
}

// BenchmarkGroupRandomKills measures what TestGroupOfThreeRandomKills
// checks, on kfake or, with KAFKA_BROKERS, on Apache Kafka: per run, the
// time from the last restart to the last delivery (the newest inbox
// record's timestamp; 0 when every delivery was made before it), until the
// group settled, and the longest wait for a round's progress.
//
//	go test -run '^$' -bench '^BenchmarkGroupRandomKills$' -benchtime 3x ./e2e/
func BenchmarkGroupRandomKills(b *testing.B) {
	var lastDelivery, settled, slowest []float64
	for i := range b.N {
		r := randomKills(b, uint64(i+1))
		lastDelivery = append(lastDelivery, r.lastDelivery.Seconds())
		settled = append(settled, r.settled.Seconds())
		slowest = append(slowest, r.slowest.Seconds())
	}
	b.ReportMetric(slices.Max(lastDelivery), "max_last_delivery_after_restart_s")
	b.ReportMetric(slices.Max(settled), "max_settled_after_restart_s")
	b.ReportMetric(slices.Max(slowest), "max_round_s")
}

// killsReport is what a run of randomKills measured.
type killsReport struct {
	// lastDelivery is from the last restart to the newest inbox record's
	// timestamp (0 when every delivery was made before it); settled, to
	// the moment the changelog showed every task done.
	lastDelivery, settled time.Duration
	slowest               time.Duration // the longest wait for a round's progress
}

// randomKills plays eight rounds of random SIGKILLs and restarts of one of
// three instances (TestGroupOfThreeRandomKills), with the random choices
// of seed, checks the inbox against the oracle and reports the timings.
func randomKills(t testing.TB, seed uint64) killsReport {
	t.Helper()
	const (
		roundDeadline  = 30 * time.Second // for a round's progress: at most 3.5 s measured on kfake, 4.5 s on Kafka 4.4
		settleDeadline = 45 * time.Second // from the last restart: 0.04 s measured on both
	)
	start := time.Now()
	sc := newScenario(scenarioConfig{Seed: 31, Users: 3000, Businesses: 20, Interactions: 20000, Campaigns: 24})
	want, _ := expectedDeliveries(sc.Interactions, sc.Campaigns, defaultOracle)
	const parts = 6
	c := newCluster(t, "group3", parts)
	c.produceScenario(t, sc)
	rng := rand.New(rand.NewPCG(seed, 3))
	t.Logf("random seed %d", seed)
	names := []string{"a", "b", "c"}
	dirs := map[string]string{}
	for _, n := range names {
		dirs[n] = filepath.Join(t.TempDir(), n)
	}
	g := startProcGroup(t, c, parts, names, func(n string) string { return dirs[n] })
	progress := func() int64 { return sum(c.offsets(t, c.names.Inbox, false)) }
	total := int64(len(want))
	kills, wiped := 0, 0
	var slowest time.Duration // the longest wait for a round's progress
	for round := 0; round < 8; round++ {
		// Wait for some progress, at most half of what is left.
		from := progress()
		need := min(20+rng.Int64N(total/20+1), max((total-int64(len(c.readAll(t, c.names.Inbox))))/2, 0))
		began := time.Now()
		deadline := began.Add(roundDeadline)
		for progress()-from < need {
			if err := g.alive(); err != nil {
				t.Fatalf("round %d: %v", round, err)
			}
			if time.Now().After(deadline) {
				t.Fatalf("round %d: the inbox grew by %d records in %s, want %d (a group that stalls?)", round, progress()-from, roundDeadline, need)
			}
			time.Sleep(20 * time.Millisecond) // polling interval
		}
		slowest = max(slowest, time.Since(began))
		time.Sleep(time.Duration(rng.IntN(300)) * time.Millisecond) // a random moment, not an assertion
		victim := names[rng.IntN(len(names))]
		g.procs[victim].kill(t)
		kills++
		if rng.IntN(4) == 0 {
			if err := os.RemoveAll(dirs[victim]); err != nil {
				t.Fatal(err)
			}
			wiped++
		}
		// Restart at once or after the others took its partitions.
		time.Sleep(time.Duration(rng.IntN(3000)) * time.Millisecond) // a random moment, not an assertion
		g.launch(victim)
	}
	lastRestart := time.Now()
	c.waitSettled(t, campaignIDs(sc.Campaigns), settleDeadline, g.alive)
	rep := killsReport{settled: time.Since(lastRestart), slowest: slowest}
	for _, n := range names {
		g.procs[n].term(t)
	}
	var newest time.Time
	for _, r := range c.readAll(t, c.names.Inbox) {
		if r.Timestamp.After(newest) {
			newest = r.Timestamp
		}
	}
	rep.lastDelivery = max(newest.Sub(lastRestart), 0)
	ir := c.checkInbox(t, sc, want)
	t.Logf("3 instances, %d random kills (%d with the state folder deleted), %d launches; slowest round %s (deadline %s), settled %s after the last restart (deadline %s), last delivery %s after it; inbox records %d, deliveries %d, expected %d, duplicates %d, missing %d, extra %d; %s",
		kills, wiped, g.launches, slowest.Round(time.Millisecond), roundDeadline, rep.settled.Round(time.Millisecond), settleDeadline, rep.lastDelivery.Round(time.Millisecond),
		ir.Records, ir.Deliveries, ir.Expected, len(ir.Duplicates), len(ir.Missing), len(ir.Extra), time.Since(start).Round(time.Millisecond))
	return rep
}

// procGroup is instances of one group run as processes (sponsor run, with
// the group tests' small fan-out chunks and polls), by name. A relaunch
// keeps the instance's identity and its state folder.
type procGroup struct {
	t        testing.TB
	args     func(name string) []string
	logDir   string
	procs    map[string]*proc
	launches int
}

// startProcGroup launches one instance per name, each with its state in
// stateDir(name) and the extra flags, and dumps their logs' tails if the
// test fails.
func startProcGroup(t testing.TB, c *cluster, parts int32, names []string, stateDir func(string) string, extra ...string) *procGroup {
	t.Helper()
	g := &procGroup{t: t, logDir: t.TempDir(), procs: map[string]*proc{}}
	g.args = func(name string) []string {
		return append([]string{"run", "--brokers", strings.Join(c.brokers, ","), "--registry", c.registry, "--topic-prefix", c.prefix,
			"--state-dir", stateDir(name), "--group", c.group, "--instance-id", name, "--http", "127.0.0.1:0",
			"--create-topics", "--partitions", fmt.Sprint(parts), "--fanout-chunk", "50", "--max-poll-records", "300",
			"--session-timeout", "6s"}, extra...)
	}
	for _, n := range names {
		g.launch(n)
	}
	t.Cleanup(func() {
		if t.Failed() {
			for _, p := range g.procs {
				dumpTail(t, p.log, 20)
			}
		}
	})
	return g
}

// launch starts (again) the instance name.
func (g *procGroup) launch(name string) *proc {
	g.launches++
	p := startProc(g.t, name, g.args(name), g.logDir, g.launches)
	g.procs[name] = p
	return p
}

// alive reports the instances that exited.
func (g *procGroup) alive() error {
	var errs []error
	for _, p := range g.procs {
		errs = append(errs, p.exited())
	}
	return errors.Join(errs...)
}
