package e2e

import (
	"fmt"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sponsored/sponsor/pipeline"
	"github.com/sponsored/sponsor/policy"
	"github.com/sponsored/sponsor/schemas"
	"github.com/sponsored/sponsor/topics"
)

// TestReplayAndShadowDiff runs `sponsor replay` and `sponsor diff` (the
// built binary) around the pipeline, as an SRE would:
//
//   - the plan alone changes no offset; --yes is refused while an instance
//     runs;
//   - replay --to-start --yes on the pipeline's own group, then a restart:
//     no new inbox record, no new decision (nothing sent twice);
//   - replay --shadow s0 --to-start --yes and a shadow run with the same
//     rules: its inbox and decisions are the oracle's, and `sponsor diff`
//     finds the runs agree (a replay decides exactly the same);
//   - a shadow run s1 with a contact retention of 30 days instead of 365:
//     its inbox and decisions are the 30-day oracle's, the real inbox is
//     untouched, and `sponsor diff` counts exactly the deliveries and
//     decisions on which the topics of the two runs differ.
func TestReplayAndShadowDiff(t *testing.T) {
	bin := sponsorBinary(t)
	sc := newScenario(smallScenario)
	want, _ := expectedDeliveries(sc.Interactions, sc.Campaigns, defaultOracle)
	short := oracleConfig{Retention: 30 * 24 * time.Hour}
	c := newCluster(t, "replay-cli", 3)
	c.produceScenario(t, sc)
	ids := campaignIDs(sc.Campaigns)
	dir := t.TempDir()
	h := startRunner(t, c, dir, nil)
	c.waitSettled(t, ids, 90*time.Second, h.alive)
	before := c.checkInbox(t, sc, want)
	decisionsBefore := len(c.readAll(t, c.names.Decisions))

	run := func(args ...string) (string, error) {
		args = append(args, "--brokers", strings.Join(c.brokers, ","), "--registry", c.registry, "--topic-prefix", c.prefix, "--group", c.group)
		out, err := exec.Command(bin, args...).CombinedOutput()
		return string(out), err
	}
	committed := func(group string) map[int32]int64 {
		ctx := testContext(t, 10*time.Second)
		os, err := c.adm.FetchOffsets(ctx, group)
		if err != nil {
			t.Fatalf("fetch offsets of %s: %v", group, err)
		}
		out := map[int32]int64{}
		for p, o := range os[c.names.Interactions] {
			out[p] = o.At
		}
		return out
	}

	// While the instance runs: the plan is shown, --yes is refused.
	out, err := run("replay", "--to-start", "--yes")
	if err == nil || !strings.Contains(out, "member(s) running") {
		t.Fatalf("replay --yes with an instance running: %v\n%s\nwant a refusal", err, out)
	}
	h.stop(t)
	offsets := committed(c.group)
	out, err = run("replay", "--to-start")
	if err != nil || !strings.Contains(out, "Nothing changed") {
		t.Fatalf("replay plan: %v\n%s", err, out)
	}
	if got := committed(c.group); fmt.Sprint(got) != fmt.Sprint(offsets) {
		t.Fatalf("the plan changed the offsets: %v -> %v", offsets, got)
	}
	var total int64
	for _, o := range offsets {
		total += o
	}
	if !strings.Contains(out, fmt.Sprintf("records to read again: %d", total)) {
		t.Errorf("plan does not say %d records are read again:\n%s", total, out)
	}
	t.Logf("replay plan:\n%s", out)
	out, err = run("replay", "--to-start", "--yes")
	if err != nil {
		t.Fatalf("replay --yes: %v\n%s", err, out)
	}
	for p, o := range committed(c.group) {
		if o != 0 {
			t.Fatalf("after replay --to-start --yes, partition %d is at %d, want 0", p, o)
		}
	}
	// A new interaction after everything: once it is processed, the
	// restarted runner has gone over the whole replayed range.
	marker := schemas.Interaction{EventID: "marker", UserID: userID(1), BusinessID: businessID(0), Kind: schemas.BusinessMessage, OccurredAt: time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)}
	c.produce(t, c.interactionRecord(t, &marker))
	sc.Interactions = append(sc.Interactions, marker)
	h = startRunner(t, c, dir, nil)
	c.waitSettled(t, ids, 90*time.Second, h.alive)
	after := c.checkInbox(t, sc, want)
	if after.Records != before.Records {
		t.Errorf("inbox has %d records after the replay, want %d (nothing sent twice)", after.Records, before.Records)
	}
	if n := len(c.readAll(t, c.names.Decisions)); n != decisionsBefore {
		t.Errorf("decisions topic has %d records after the replay, want %d (nothing decided twice)", n, decisionsBefore)
	}
	h.stop(t)

	// Two shadow runs from the start: s0 with the same rules, which must
	// decide exactly as the real run did (a replay is deterministic), and
	// s1 with a 30-day contact retention instead of 365 days, checked
	// against the oracle with that retention; diff is checked against
	// what the topics of both runs hold, read here directly.
	shadowRun := func(name string, mod func(*pipeline.Config)) *cluster {
		out, err := run("replay", "--shadow", name, "--to-start", "--yes")
		if err != nil {
			t.Fatalf("replay --shadow %s: %v\n%s", name, err, out)
		}
		s := *c
		run := topics.Run{Prefix: c.prefix, Group: c.group, Shadow: name}
		s.group = run.ConsumerGroup()
		s.names = run.Names()
		hs := startRunner(t, c, t.TempDir(), func(cfg *pipeline.Config) {
			cfg.Shadow = name
			if mod != nil {
				mod(cfg)
			}
		})
		s.waitSettled(t, ids, 90*time.Second, hs.alive)
		hs.stop(t)
		return &s
	}
	s0 := shadowRun("s0", nil)
	s0.checkInbox(t, sc, want)
	out, err = run("diff", "--shadow", "s0")
	if err != nil || !strings.Contains(out, "the runs agree") || !strings.Contains(out, "decisions that changed (real->shadow): 0 kinds") {
		t.Errorf("diff of a shadow run with the same rules: %v\n%s\nwant: the runs agree, no decision changed", err, out)
	}
	s1 := shadowRun("s1", func(cfg *pipeline.Config) { cfg.Policy = policy.Config{ContactRetention: short.Retention} })
	// The shadow decided by the 30-day rules: what a short retention
	// forgets (blocks, audiences, windows of contacts quiet for 30 days).
	wantShort, _ := expectedDeliveries(sc.Interactions, sc.Campaigns, short)
	s1.checkInbox(t, sc, wantShort)
	if drep := compareDecisions(s1.serde, s1.readAll(t, s1.names.Decisions), wantShort, oracleOutcomes(sc.Interactions, sc.Campaigns, short), s1.parts); !drep.ok() {
		t.Errorf("shadow s1's decisions are not the 30-day oracle's: %s", drep)
	}
	if real := c.checkInbox(t, sc, want); real.Records != before.Records {
		t.Errorf("the shadow runs changed the real inbox: %d records, want %d", real.Records, before.Records)
	}

	// What diff must find, from the topics themselves.
	delivered := func(cl *cluster) map[pairKey]bool {
		out := map[pairKey]bool{}
		for _, r := range cl.readAll(t, cl.names.Inbox) {
			m, err := cl.serde.DecodeInbox(r.Value)
			if err != nil {
				t.Fatal(err)
			}
			out[pairKey{m.CampaignID, m.UserID}] = true
		}
		return out
	}
	decided := func(cl *cluster) map[pairKey]schemas.Outcome {
		out := map[pairKey]schemas.Outcome{}
		for _, r := range cl.readAll(t, cl.names.Decisions) {
			ds, err := cl.serde.DecodeDecisions(nil, r.Value)
			if err != nil {
				t.Fatal(err)
			}
			for _, d := range ds {
				out[pairKey{d.CampaignID, d.UserID}] = d.Outcome
			}
		}
		return out
	}
	realIn, shadowIn := delivered(c), delivered(s1)
	var both, onlyReal, onlyShadow int
	for k := range realIn {
		if shadowIn[k] {
			both++
		} else {
			onlyReal++
		}
	}
	onlyShadow = len(shadowIn) - both
	realD, shadowD := decided(c), decided(s1)
	changed := 0
	for k, o := range realD {
		if so, ok := shadowD[k]; !ok || so != o {
			changed++
		}
	}
	for k := range shadowD {
		if _, ok := realD[k]; !ok {
			changed++
		}
	}
	if onlyReal+onlyShadow == 0 {
		t.Fatal("the scenario's deliveries do not depend on the retention: the diff would prove nothing")
	}
	out, err = run("diff", "--shadow", "s1", "-n", "3")
	if err == nil {
		t.Errorf("diff of runs that differ exited 0:\n%s", out)
	}
	m := regexp.MustCompile(`(\d+) deliveries in both, (\d+) only in the real inbox, (\d+) only in the shadow`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("diff output has no summary:\n%s", out)
	}
	gotBoth, _ := strconv.Atoi(m[1])
	gotReal, _ := strconv.Atoi(m[2])
	gotShadow, _ := strconv.Atoi(m[3])
	if gotBoth != both || gotReal != onlyReal || gotShadow != onlyShadow {
		t.Errorf("diff: both %d, only real %d, only shadow %d; the inboxes say %d, %d, %d\n%s", gotBoth, gotReal, gotShadow, both, onlyReal, onlyShadow, out)
	}
	sum := 0
	for _, x := range regexp.MustCompile(`(?m)^  \S+->\S+ +(\d+)$`).FindAllStringSubmatch(out, -1) {
		n, _ := strconv.Atoi(x[1])
		sum += n
	}
	if sum != changed {
		t.Errorf("diff counts %d changed decisions, the decisions topics differ on %d pairs\n%s", sum, changed, out)
	}
	t.Logf("sponsor diff --shadow s1:\n%s", out)
}
