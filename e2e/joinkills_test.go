package e2e

import (
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sponsored/sponsor/schemas"
)

func maxTime(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}

// TestGroupSettlesAfterKillsInJoins is the pattern that wedged groups on
// the embedded Kafka for about 70 s (issue 15): three instances (once they
// have processed the scenario), and round
// after round one is SIGKILLed and restarted, and a random one (maybe the
// same) is SIGKILLed again while the group is still joining after that
// restart, then restarted. kfake's coordinator gives a member killed while
// its JoinGroup is parked no session timer again, so with dynamic members
// only the 60 s rebalance timeout removed it. As static members (the
// default) a restarted instance takes its previous member's place at once,
// whatever state that member was left in.
//
// After the last restart a probe campaign (a business of its own, one new
// contact per partition) is produced; the group must be stable and whole
// again (three members, every partition assigned) and everything processed,
// the probe delivered on every partition, well inside deadlines (30 s for
// the group, 60 s for the rest) that a 60-70 s stall cannot meet. The
// figures are logged (the probe's last delivery after the last restart is
// issue 15's measure), and the inbox must be exactly the oracle's.
func TestGroupSettlesAfterKillsInJoins(t *testing.T) {
	if testing.Short() {
		t.Skip("kills in joins: slow; skipped in -short mode")
	}
	sc := newScenario(scenarioConfig{Seed: 61, Users: 2000, Businesses: 15, Interactions: 12000, Campaigns: 16})
	const parts = 6
	c := newCluster(t, "joinkills", parts)
	c.produceScenario(t, sc)
	// The probe, produced after the last restart: a business of its own,
	// one new contact of it on each partition, then its campaign, all later
	// in event time than the whole scenario (so nothing of the scenario
	// changes). Its deliveries are work that can only be done once the
	// group is back: the last of them says when it was.
	var latest time.Time
	for _, in := range sc.Interactions {
		latest = maxTime(latest, in.OccurredAt)
	}
	for _, cp := range sc.Campaigns {
		latest = maxTime(latest, maxTime(cp.SendAt, cp.ExpiresAt))
	}
	probeAt := latest.Add(time.Minute)
	var probeIns []schemas.Interaction
	covered := map[int32]bool{}
	for i := 0; len(covered) < parts; i++ {
		u := fmt.Sprintf("probe-user-%03d", i)
		if p := userPartition(u, parts); !covered[p] {
			covered[p] = true
			probeIns = append(probeIns, schemas.Interaction{EventID: "probe-" + u, UserID: u, BusinessID: "biz-probe", Kind: schemas.UserMessage, OccurredAt: probeAt.Add(time.Duration(i) * time.Millisecond)})
		}
	}
	probeCamp := schemas.Campaign{CampaignID: "camp-probe", BusinessID: "biz-probe", Action: schemas.Launch, SendAt: probeAt.Add(time.Minute),
		ExpiresAt: probeAt.Add(25 * time.Hour), Message: schemas.Message{Text: "probe"}}
	if probeCamp.ExpiresAt.After(time.Now()) {
		t.Fatalf("the probe's times (%s) must be in the past, so that it fires by the wall clock", probeCamp.ExpiresAt)
	}
	sc.Interactions = append(sc.Interactions, probeIns...)
	sc.Campaigns = append(sc.Campaigns, probeCamp)
	want, _ := expectedDeliveries(sc.Interactions, sc.Campaigns, defaultOracle)

	seed := uint64(time.Now().UnixNano())
	rng := rand.New(rand.NewPCG(seed, 61))
	t.Logf("random seed %d", seed)
	stateRoot := t.TempDir()
	names := []string{"a", "b", "c"}
	var extra []string
	if os.Getenv("SPONSOR_E2E_DYNAMIC") != "" {
		// The comparison for the notes: the same with dynamic members,
		// which on kfake stall (issue 15) and fail the deadlines.
		extra = append(extra, "--dynamic")
		t.Log("SPONSOR_E2E_DYNAMIC is set: dynamic members")
	}
	g := startProcGroup(t, c, parts, names, func(n string) string { return filepath.Join(stateRoot, "state-"+n) }, extra...)
	// whole: three members (a, b and c; any three with --dynamic), each
	// with partitions, all of them assigned.
	whole := func(m map[string][]int32) bool {
		n := 0
		for id, ps := range m {
			if len(ps) == 0 || len(extra) == 0 && !slices.Contains(names, id) {
				return false
			}
			n += len(ps)
		}
		return len(m) == len(names) && n == parts
	}
	// allReady reports whether every instance answers /readyz with 200:
	// it has its assignment from the group and its tasks are restored.
	allReady := func() bool {
		cl := http.Client{Timeout: 2 * time.Second}
		for _, p := range g.procs {
			u := metricsURL(p)
			if u == "" {
				return false
			}
			resp, err := cl.Get(strings.TrimSuffix(u, "/metrics") + "/readyz")
			if err != nil {
				return false
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				return false
			}
		}
		return true
	}
	// waitWhole waits until the group is stable with the three instances
	// and every partition assigned, and every instance is ready.
	waitWhole := func(what string, limit time.Duration) {
		t.Helper()
		for deadline := time.Now().Add(limit); ; {
			if m, state := c.describeGroup(t); state == "Stable" && whole(m) && allReady() {
				return
			}
			if err := g.alive(); err != nil {
				t.Fatalf("%s: %v", what, err)
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: the group is %v after %s, want a, b and c sharing the %d partitions", what, c.groupMembers(t), limit, parts)
			}
			time.Sleep(20 * time.Millisecond) // polling interval
		}
	}
	// waitStarted waits until p has opened its group session (it is
	// joining then), or has exited.
	waitStarted := func(p *proc) {
		t.Helper()
		for deadline := time.Now().Add(30 * time.Second); !logHas(t, p.log, "pipeline started"); time.Sleep(10 * time.Millisecond) {
			if p.exited() != nil {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: no 'pipeline started' within 30s", p.name)
			}
		}
	}
	waitWhole("start", 60*time.Second)
	// The scenario done first: what follows measures the group's
	// recovery, not a backlog (TestGroupOfThreeRandomKills kills in the
	// middle of work).
	c.waitSettled(t, campaignIDs(sc.Campaigns[:len(sc.Campaigns)-1]), 120*time.Second, g.alive)

	const rounds = 6
	kills := 0
	var lastRestart time.Time
	for round := range rounds {
		v := names[rng.IntN(len(names))]
		g.procs[v].kill(t)
		kills++
		g.launch(v)
		waitStarted(g.procs[v])
		// In the middle of the join that restart began.
		time.Sleep(time.Duration(rng.IntN(100)) * time.Millisecond) // a random moment, not an assertion
		w := names[rng.IntN(len(names))]
		g.procs[w].kill(t)
		kills++
		g.launch(w)
		lastRestart = time.Now()
		t.Logf("round %d: killed %s, restarted it, killed %s while joining, restarted it", round, v, w)
	}
	var recs []*kgo.Record
	for i := range probeIns {
		recs = append(recs, c.interactionRecord(t, &probeIns[i]))
	}
	c.produce(t, recs...)
	c.produce(t, c.campaignRecord(t, &probeCamp))
	waitWhole("after the last restart", 30*time.Second)
	groupAt := time.Since(lastRestart)
	c.waitSettled(t, campaignIDs(sc.Campaigns), 60*time.Second, g.alive)
	settledAt := time.Since(lastRestart)
	for _, n := range names {
		g.procs[n].term(t)
	}
	// When the probe's last delivery was written: the record's timestamp,
	// set by the instance that produced it.
	var last time.Time
	probes := 0
	for _, r := range c.readAll(t, c.names.Inbox) {
		m, err := c.serde.DecodeInbox(r.Value)
		if err != nil {
			t.Fatalf("inbox %d@%d: %v", r.Partition, r.Offset, err)
		}
		if m.CampaignID == probeCamp.CampaignID {
			probes++
			last = maxTime(last, r.Timestamp)
		}
	}
	if probes != parts {
		t.Fatalf("the probe campaign has %d deliveries, want %d (one per partition)", probes, parts)
	}
	rep := c.checkInbox(t, sc, want)
	t.Logf("%d kills in %d rounds, %d launches; after the last restart: group stable and every instance ready after %s, the probe's last delivery written %s after it, settled (changelog) after %s; inbox records %d, deliveries %d, expected %d, duplicates %d, missing %d",
		kills, rounds, g.launches, groupAt.Round(time.Millisecond), last.Sub(lastRestart).Round(time.Millisecond),
		settledAt.Round(time.Millisecond), rep.Records, rep.Deliveries, rep.Expected, len(rep.Duplicates), len(rep.Missing))
}
