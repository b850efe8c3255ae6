package e2e

import (
	"bytes"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"testing"
	"time"
)

// TestStandbyFailover runs two instances with --standby-replicas 1 on a
// seeded history, SIGKILLs one for good in the middle of it (not
// restarted), and checks that its partitions went to the other, which
// followed them as a standby: the survivor's restore of each read only the
// tail of its changelog, far fewer records than the partition's state, and
// the inbox ends up exactly the oracle's.
func TestStandbyFailover(t *testing.T) {
	if testing.Short() {
		t.Skip("standby test: slow; skipped in -short mode")
	}
	sc := newScenario(scenarioConfig{Seed: 61, Users: 3000, Businesses: 20, Interactions: 20000, Campaigns: 24})
	standbyFailover(t, sc, "standby", func(g *procGroup, c *cluster, total int64) {
		// Some progress first, so that the state to restore is large.
		waitInbox(t, c, g, total/3)
	})
}

// TestStandbyPromotedMidFanout is TestStandbyFailover with the owner
// killed while it is in the middle of fan-outs (--fanout-chunk 20, the
// kill once its /metrics shows a fan-out in progress): the promoted
// standby continues them from the cursor in the restored state, and
// exactly-once holds: no duplicate, no missing delivery.
func TestStandbyPromotedMidFanout(t *testing.T) {
	if testing.Short() {
		t.Skip("standby test: slow; skipped in -short mode")
	}
	sc := newScenario(scenarioConfig{Seed: 67, Users: 4000, Businesses: 6, Interactions: 16000, Campaigns: 12})
	standbyFailover(t, sc, "standby-fanout", func(g *procGroup, c *cluster, total int64) {
		waitInbox(t, c, g, total/5)
		url := metricsURL(g.procs["a"])
		deadline := time.Now().Add(60 * time.Second)
		for metricSum(url, "sponsor_fanout_contacts_visited") <= 0 {
			if err := g.alive(); err != nil {
				t.Fatal(err)
			}
			if time.Now().After(deadline) {
				t.Fatalf("instance a showed no fan-out in progress within 60s (metrics %q)", url)
			}
			time.Sleep(5 * time.Millisecond) // polling interval
		}
	}, "--fanout-chunk", "20")
}

// standbyFailover runs instances a and b of one group with one standby
// each, calls before, kills a for good, and checks what b did and the inbox.
func standbyFailover(t *testing.T, sc scenario, group string, before func(g *procGroup, c *cluster, total int64), extra ...string) {
	t.Helper()
	want, _ := expectedDeliveries(sc.Interactions, sc.Campaigns, defaultOracle)
	const parts = 4
	c := newCluster(t, group, parts)
	c.produceScenario(t, sc)
	dirs := map[string]string{"a": filepath.Join(t.TempDir(), "a"), "b": filepath.Join(t.TempDir(), "b")}
	g := startProcGroup(t, c, parts, []string{"a", "b"}, func(n string) string { return dirs[n] },
		append([]string{"--standby-replicas", "1", "--transaction-timeout", "6s"}, extra...)...)
	// Both own two partitions and follow the other two.
	deadline := time.Now().Add(60 * time.Second)
	for {
		m := c.groupMembers(t)
		if len(m["a"]) == 2 && len(m["b"]) == 2 && standbys(g.procs["a"]) == 2 && standbys(g.procs["b"]) == 2 {
			break
		}
		if err := g.alive(); err != nil {
			t.Fatal(err)
		}
		if time.Now().After(deadline) {
			t.Fatalf("not two partitions and two standbys each within 60s: group %v, standbys a %d, b %d",
				m, standbys(g.procs["a"]), standbys(g.procs["b"]))
		}
		time.Sleep(50 * time.Millisecond) // polling interval
	}
	before(g, c, int64(len(want)))
	victim := c.groupMembers(t)["a"]
	changelog := c.offsets(t, c.names.Changelog, false)
	g.procs["a"].kill(t)
	b := g.procs["b"]
	// a may have settled its partitions before its death, so the state
	// alone does not show the failover: wait for b to own them and to have
	// promoted each (after the session timeout), then for the state.
	deadline = time.Now().Add(120 * time.Second)
	promoted := map[int32]int64{}
	for {
		m := c.groupMembers(t)
		promoted = promotions(t, b.log)
		done := slices.Equal(m["b"], []int32{0, 1, 2, 3})
		for _, p := range victim {
			_, ok := promoted[p]
			done = done && ok
		}
		if done {
			break
		}
		if err := b.exited(); err != nil {
			t.Fatal(err)
		}
		if time.Now().After(deadline) {
			t.Fatalf("within 120s of a's death: b owns %v, promotions %v; want every partition, a's %v promoted from b's standby", m["b"], promoted, victim)
		}
		time.Sleep(50 * time.Millisecond) // polling interval
	}
	c.waitSettled(t, campaignIDs(sc.Campaigns), 120*time.Second, b.exited)
	var tail, full int64
	for _, p := range victim {
		n, ok := promoted[p]
		if !ok {
			t.Errorf("partition %d of the dead instance was not promoted from b's standby (promotions %v)", p, promoted)
		}
		tail += n
		full += changelog[p]
	}
	t.Logf("dead instance's partitions %v: changelog offsets at the kill %d, records b's restore read %d (by partition %v)", victim, full, tail, promoted)
	if full < 1000 {
		t.Fatalf("the dead instance's changelog held %d offsets at the kill: too little state to tell a tail from a full restore", full)
	}
	if tail*10 > full {
		t.Errorf("b's restore of the dead instance's partitions read %d changelog records, want far fewer than their %d (a tail, not the state)", tail, full)
	}
	g.procs["b"].term(t)
	rep := c.checkInbox(t, sc, want)
	t.Logf("inbox records %d, deliveries %d, expected %d, duplicates %d, missing %d, extra %d", rep.Records, rep.Deliveries, rep.Expected,
		len(rep.Duplicates), len(rep.Missing), len(rep.Extra))
}

// waitInbox waits until the inbox has n records.
func waitInbox(t *testing.T, c *cluster, g *procGroup, n int64) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for sum(c.offsets(t, c.names.Inbox, false)) < n {
		if err := g.alive(); err != nil {
			t.Fatal(err)
		}
		if time.Now().After(deadline) {
			t.Fatalf("the inbox did not reach %d records within 60s", n)
		}
		time.Sleep(20 * time.Millisecond) // polling interval
	}
}

// standbys returns the sponsor_standby_partitions of an instance, -1 if
// it does not answer.
func standbys(p *proc) int {
	if v, ok := scrapeCounters(metricsURL(p))["sponsor_standby_partitions"]; ok {
		return int(v)
	}
	return -1
}

var promotedLine = regexp.MustCompile(`msg="standby promoted".* partition=(\d+) .*changelog_records=(\d+)`)

// promotions returns, by partition, the changelog records the restore of
// each partition promoted from a standby read, from the instance's log.
func promotions(t *testing.T, log string) map[int32]int64 {
	t.Helper()
	b, err := os.ReadFile(log)
	if err != nil {
		t.Fatal(err)
	}
	out := map[int32]int64{}
	for _, l := range bytes.Split(b, []byte("\n")) {
		if m := promotedLine.FindSubmatch(l); m != nil {
			p, _ := strconv.Atoi(string(m[1]))
			n, _ := strconv.ParseInt(string(m[2]), 10, 64)
			out[int32(p)] += n
		}
	}
	return out
}
