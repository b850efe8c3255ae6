package e2e

import (
	"bytes"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sponsored/sponsor/deadletter"
	"github.com/sponsored/sponsor/pipeline"
	"github.com/sponsored/sponsor/schemas"
)

var smallScenario = scenarioConfig{Seed: 1, Users: 300, Businesses: 20, Interactions: 3000, Campaigns: 16}

// logTally logs the oracle's outcomes and fails if the scenario does not
// exercise one of the rules.
func logTally(t *testing.T, tally map[string]int, need ...string) {
	t.Helper()
	t.Logf("oracle outcomes per (campaign, user) candidate: %v", tally)
	for _, k := range need {
		if tally[k] == 0 {
			t.Errorf("scenario does not exercise %q: no candidate has that outcome (tally %v)", k, tally)
		}
	}
}

var allOutcomes = []string{outDelivered, outStranger, outRetention, outBlocked, outOptedOut, outAudience, outWindow, outErasedReset}

// TestEndToEnd runs the pipeline in-process on a seeded history and checks
// the inbox, read with read_committed, record by record with the oracle:
// once with the default batch sizes (the whole history in one
// transaction), once with small polls (many transactions, campaigns firing
// between batches by stream time).
func TestEndToEnd(t *testing.T) {
	sc := newScenario(smallScenario)
	want, tally := expectedDeliveries(sc.Interactions, sc.Campaigns, defaultOracle)
	outcomes := oracleOutcomes(sc.Interactions, sc.Campaigns, defaultOracle)
	logTally(t, tally, allOutcomes...)
	for _, tc := range []struct {
		name string
		mod  func(*pipeline.Config)
	}{
		{"defaults", nil},
		{"small-polls", func(c *pipeline.Config) { c.MaxPollRecords = 100 }},
		{"no-decisions", func(c *pipeline.Config) { c.NoDecisions = true }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			start := time.Now()
			c := newCluster(t, "e2e", 4)
			c.produceScenario(t, sc)
			h := startRunner(t, c, t.TempDir(), tc.mod)
			c.waitSettled(t, campaignIDs(sc.Campaigns), 90*time.Second, h.alive)
			var rep inboxReport
			if tc.name == "no-decisions" {
				// The audit trail is off: the inbox is the same, and the
				// decisions topic stays empty.
				rep = compareInbox(c.serde, c.readAll(t, c.names.Inbox), want, sc.Campaigns, c.parts)
				if !rep.ok() {
					t.Errorf("inbox is not the oracle's: %s", rep)
				}
				if n := len(c.readAll(t, c.names.Decisions)); n != 0 {
					t.Errorf("decisions topic has %d records with NoDecisions, want 0", n)
				}
			} else {
				rep = c.checkInbox(t, sc, want)
				// Every suppression, with its reason, against the oracle.
				drep := compareDecisions(c.serde, c.readAll(t, c.names.Decisions), want, outcomes, c.parts)
				if !drep.ok() {
					t.Errorf("decisions are not the oracle's outcomes: %s", drep)
				}
				t.Logf("decisions: %d records, by outcome %v", drep.Records, drep.ByOutcome)
			}
			st := h.r.Stats()
			if got := st.Delivered(); got != int64(len(want)) {
				t.Errorf("Stats().Delivered() = %d, want %d (the oracle's deliveries)", got, len(want))
			}
			if got := st.Interactions.Load(); got != int64(len(sc.Interactions)) {
				t.Errorf("Stats().Interactions = %d, want %d", got, len(sc.Interactions))
			}
			if got := st.DeadLetters.Load(); got != 0 {
				t.Errorf("Stats().DeadLetters = %d, want 0 on good input", got)
			}
			t.Logf("interactions %d, campaign records %d; inbox records %d, deliveries %d, expected %d, duplicates %d, missing %d, extra %d; transactions %d, aborts %d; %s",
				len(sc.Interactions), len(sc.Campaigns), rep.Records, rep.Deliveries, rep.Expected, len(rep.Duplicates), len(rep.Missing), len(rep.Extra),
				st.Transactions.Load(), st.Aborts.Load(), time.Since(start).Round(time.Millisecond))
		})
	}
}

// TestFanoutPace checks that a fan-out larger than FanoutChunk proceeds in
// chunks, one transaction each, and logs its pace: 300 contacts in chunks
// of 10 are 30 transactions that consume no interaction (they were once
// held 500ms each by the client; see pipeline.taskOffsets).
func TestFanoutPace(t *testing.T) {
	c := newCluster(t, "pace", 1)
	send := time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)
	camp := schemas.Campaign{CampaignID: "camp-pace", BusinessID: "biz-pace", Action: schemas.Launch, SendAt: send, ExpiresAt: send.Add(time.Hour), Message: schemas.Message{Text: "pace"}}
	c.produce(t, c.campaignRecord(t, &camp))
	var ins []schemas.Interaction
	var recs []*kgo.Record
	for i := range 300 {
		in := schemas.Interaction{EventID: fmt.Sprint(i), UserID: userID(i), BusinessID: camp.BusinessID, Kind: schemas.UserMessage, OccurredAt: send.Add(time.Duration(i-300) * time.Minute)}
		ins = append(ins, in)
		recs = append(recs, c.interactionRecord(t, &in))
	}
	c.produce(t, recs...)
	sc := scenario{Campaigns: []schemas.Campaign{camp}, Interactions: ins}
	want, _ := expectedDeliveries(ins, sc.Campaigns, defaultOracle)
	start := time.Now()
	reg := prometheus.NewRegistry()
	h := startRunnerMetrics(t, c, t.TempDir(), func(cfg *pipeline.Config) { cfg.FanoutChunk = 10 }, reg)
	// The fan-out's progress, sampled while it runs: Stats.Fanouts and the
	// sponsor_fanout_* gauges say how far it is, of how many contacts.
	var (
		mid     pipeline.FanoutProgress // a sample taken mid-way
		midSeen = make(chan struct{})
		gauges  string
	)
	stopSampling := make(chan struct{})
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		for {
			select {
			case <-stopSampling:
				return
			case <-time.After(2 * time.Millisecond):
			}
			for _, f := range h.r.Stats().Fanouts() {
				if f.Campaign == camp.CampaignID && f.Visited > 0 && f.Visited < f.Contacts && mid.Campaign == "" {
					mid = f
					if mfs, err := reg.Gather(); err == nil {
						for _, mf := range mfs {
							if strings.HasPrefix(mf.GetName(), "sponsor_fanout_") {
								for _, m := range mf.GetMetric() {
									gauges += fmt.Sprintf("%s %v\n", mf.GetName(), m.GetGauge().GetValue())
								}
							}
						}
					}
					close(midSeen)
				}
			}
		}
	}()
	c.waitSettled(t, campaignIDs(sc.Campaigns), 60*time.Second, h.alive)
	close(stopSampling)
	<-sampled
	took := time.Since(start)
	select {
	case <-midSeen:
		if mid.Contacts != 300 || mid.Partitions != 1 || mid.Decided > mid.Visited || mid.Business != camp.BusinessID {
			t.Errorf("fan-out progress mid-way: %+v, want 300 contacts of %s on 1 partition, decided <= visited", mid, camp.BusinessID)
		}
		if !strings.Contains(gauges, "sponsor_fanout_contacts 300\n") || !strings.Contains(gauges, fmt.Sprintf("sponsor_fanout_contacts_visited %d\n", mid.Visited)) {
			t.Errorf("the sponsor_fanout_* gauges mid-way:\n%s\nwant 300 contacts and %d visited", gauges, mid.Visited)
		}
		t.Logf("mid-way: %d of %d contacts visited, %d decided", mid.Visited, mid.Contacts, mid.Decided)
	default:
		t.Errorf("no sample of the fan-out in progress (Stats.Fanouts) while it ran")
	}
	if fs := h.r.Stats().Fanouts(); len(fs) != 0 {
		t.Errorf("after the fan-out, Stats.Fanouts() = %+v, want none", fs)
	}
	rep := c.checkInbox(t, sc, want)
	txns := h.r.Stats().Transactions.Load()
	t.Logf("deliveries %d in %d transactions, %s (%s per transaction)", rep.Deliveries, txns, took.Round(time.Millisecond), (took / time.Duration(max(txns, 1))).Round(time.Millisecond))
	// The pace is a figure for the log (timed assertions are flaky on a
	// shared machine); what must hold is that the fan-out really went in
	// chunks, each its own transaction, and lost or repeated nobody.
	if txns < 30 {
		t.Errorf("fan-out of 300 contacts in chunks of 10 took %d transactions, want at least 30", txns)
	}
}

// TestOracle checks the oracle itself on hand-made cases, one per rule.
func TestOracle(t *testing.T) {
	at := func(h float64) time.Time {
		return time.Date(2025, 6, 1, 0, 0, 0, 0, time.UTC).Add(time.Duration(h * float64(time.Hour)))
	}
	in := func(u, b string, k schemas.InteractionKind, h float64) schemas.Interaction {
		return schemas.Interaction{UserID: u, BusinessID: b, Kind: k, OccurredAt: at(h)}
	}
	launch := func(id, b string, h float64, aud ...schemas.AudienceRule) schemas.Campaign {
		return schemas.Campaign{CampaignID: id, BusinessID: b, Action: schemas.Launch, SendAt: at(h), ExpiresAt: at(h + 48), Audience: aud}
	}
	ins := []schemas.Interaction{
		in("stranger", "b", schemas.BusinessMessage, -10),
		in("old", "b", schemas.UserMessage, -24*366),
		in("blocker", "b", schemas.UserMessage, -10),
		in("blocker", "b", schemas.Block, -5),
		in("unblocker", "b", schemas.UserMessage, -10),
		in("unblocker", "b", schemas.Block, -5),
		in("unblocker", "b", schemas.Unblock, -4),
		in("optout", "b", schemas.BotStarted, -10),
		in("optout", "b", schemas.SponsoredOptOut, 0), // at send_at: counts
		in("clicker", "b", schemas.BotCTAClick, -24*6),
		in("msg8d", "b", schemas.UserMessage, -24*8),
		in("erased", "b", schemas.UserMessage, -3),
		in("erased", "", schemas.UserErased, -2),
		in("atsend", "b", schemas.UserMessage, 0),
		in("after", "b", schemas.UserMessage, 0.001),
		in("other", "c", schemas.UserMessage, -1),
	}
	camps := []schemas.Campaign{
		launch("c1", "b", 0),
		launch("c2", "b", 0, schemas.AudienceRule{Kind: schemas.BotCTAClick, WithinDays: 7}), // same time, larger id
		launch("c3", "b", 24),   // exactly 24h later: window (s-24h, s] excludes c1
		launch("c4", "b", 23.5), // within 24h of c1
		launch("c5", "c", -0.5), // another business: "other" wrote to it at -1h
		launch("c6", "b", 1),    // cancelled
		{CampaignID: "c6", BusinessID: "b", Action: schemas.Cancel},
	}
	got, _ := expectedDeliveries(ins, camps, defaultOracle)
	wantPairs := map[pairKey]bool{
		{"c1", "unblocker"}: true, {"c1", "clicker"}: true, {"c1", "msg8d"}: true, {"c1", "atsend"}: true,
		{"c4", "after"}: true, {"c4", "optout"}: false,
		{"c5", "other"}: true,
	}
	// c2: clicker got c1 at the same send_at: window. c3 at +24h: c1's
	// recipients are out of the window, but c4 (23.5h) reached "after".
	wantPairs[pairKey{"c3", "unblocker"}] = true
	wantPairs[pairKey{"c3", "clicker"}] = true
	wantPairs[pairKey{"c3", "msg8d"}] = true
	wantPairs[pairKey{"c3", "atsend"}] = true
	for k, ok := range wantPairs {
		if !ok {
			delete(wantPairs, k)
		}
	}
	for k := range wantPairs {
		if _, ok := got[k]; !ok {
			t.Errorf("oracle: missing %v", k)
		}
	}
	for k := range got {
		if !wantPairs[k] {
			t.Errorf("oracle: unexpected delivery %v", k)
		}
	}
}

// TestBadRecords feeds every kind of bad record the contract names and
// checks that each lands in the dead-letter topic exactly once, untouched,
// with headers naming where it came from and why; that none is acted on;
// and that the good records after them are processed.
func TestBadRecords(t *testing.T) {
	c := newCluster(t, "bad", 3)
	send := time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)
	biz := "biz-bad"
	good := schemas.Campaign{CampaignID: "camp-good", BusinessID: biz, Action: schemas.Launch, SendAt: send, ExpiresAt: send.Add(time.Hour),
		Message: schemas.Message{Text: "good"}}
	expired := schemas.Campaign{CampaignID: "camp-expired", BusinessID: biz, Action: schemas.Launch, SendAt: send.Add(-2 * time.Hour),
		ExpiresAt: send.Add(-3 * time.Hour), Message: schemas.Message{Text: "expires before it is sent"}}

	// Bad campaign first, then the good one.
	badCamp := c.campaignRecord(t, &expired)
	c.produce(t, badCamp, c.campaignRecord(t, &good))

	victim := func(u string, h int) schemas.Interaction {
		return schemas.Interaction{EventID: "ev-" + u, UserID: u, BusinessID: biz, Kind: schemas.UserMessage, OccurredAt: send.Add(time.Duration(-h) * time.Hour)}
	}
	valid := func(in schemas.Interaction) []byte { return c.interactionRecord(t, &in).Value }
	truncated := valid(victim("victim-truncated", 10))
	truncated = truncated[:len(truncated)-6]
	unknownID := append([]byte{0, 0, 0, 0x27, 0x0f}, valid(victim("victim-unknown-id", 10))[5:]...)
	emptyUser := victim("", 9)
	type bad struct {
		name, key string
		value     []byte
	}
	bads := []bad{
		{"not avro", "victim-notavro", []byte("{\"user_id\":\"victim-notavro\",\"kind\":\"USER_MESSAGE\"}")},
		{"unknown schema id", "victim-unknown-id", unknownID},
		{"truncated", "victim-truncated", truncated},
		{"empty value", "victim-empty", []byte{}},
		{"key is not the user_id", "someone-else", valid(victim("victim-misrouted", 9))},
		{"empty user_id", "victim-empty-user", valid(emptyUser)},
	}
	var recs []*kgo.Record
	for _, b := range bads {
		recs = append(recs, &kgo.Record{Topic: c.names.Interactions, Key: []byte(b.key), Value: b.value})
	}
	// Good records after them, for users on every partition.
	var goodIns []schemas.Interaction
	for i := range 12 {
		in := victim(fmt.Sprintf("good-%02d", i), 8-i/2)
		in.EventID = fmt.Sprintf("ev-good-%d", i)
		goodIns = append(goodIns, in)
		recs = append(recs, c.interactionRecord(t, &in))
	}
	c.produce(t, recs...)
	badRecs := append([]*kgo.Record{badCamp}, recs[:len(bads)]...)

	h := startRunner(t, c, t.TempDir(), nil)
	sc := scenario{Campaigns: []schemas.Campaign{expired, good}, Interactions: goodIns}
	want, _ := expectedDeliveries(goodIns, sc.Campaigns, defaultOracle)
	if len(want) != len(goodIns) {
		t.Fatalf("oracle: %d deliveries, want one per good user (%d)", len(want), len(goodIns))
	}
	c.waitSettled(t, campaignIDs(sc.Campaigns), 60*time.Second, h.alive)
	rep := c.checkInbox(t, sc, want)

	dls := c.readAll(t, c.names.DeadLetter)
	t.Logf("dead letters %d (want %d), inbox records %d, deliveries %d (want %d)", len(dls), len(badRecs), rep.Records, rep.Deliveries, len(want))
	if len(dls) != len(badRecs) {
		t.Errorf("dead-letter topic has %d records, want %d (one per bad record)", len(dls), len(badRecs))
	}
	names := append([]string{"campaign expiring before send"}, func() []string {
		var n []string
		for _, b := range bads {
			n = append(n, b.name)
		}
		return n
	}()...)
	for i, src := range badRecs {
		var found []*kgo.Record
		for _, d := range dls {
			if bytes.Equal(d.Key, src.Key) && bytes.Equal(d.Value, src.Value) && header(d, deadletter.HeaderOffset) == strconv.FormatInt(src.Offset, 10) &&
				header(d, deadletter.HeaderTopic) == src.Topic {
				found = append(found, d)
			}
		}
		if len(found) != 1 {
			t.Errorf("%s (%s/%d@%d): %d dead letters with its key, bytes, topic and offset, want exactly 1", names[i], src.Topic, src.Partition, src.Offset, len(found))
			continue
		}
		d := found[0]
		if got, want := header(d, deadletter.HeaderPartition), strconv.Itoa(int(src.Partition)); got != want {
			t.Errorf("%s: partition header %q, want %q", names[i], got, want)
		}
		for _, k := range []string{deadletter.HeaderReason, deadletter.HeaderMessage, deadletter.HeaderClass} {
			if header(d, k) == "" {
				t.Errorf("%s: header %s is missing or empty", names[i], k)
			}
		}
		t.Logf("%-30s -> reason %q: %s", names[i], header(d, deadletter.HeaderReason), header(d, deadletter.HeaderMessage))
	}
	if got := h.r.Stats().DeadLetters.Load(); got != int64(len(badRecs)) {
		t.Errorf("Stats().DeadLetters = %d, want %d", got, len(badRecs))
	}
}

func header(r *kgo.Record, key string) string {
	for _, h := range r.Headers {
		if h.Key == key {
			return string(h.Value)
		}
	}
	return ""
}

// TestReplayOffsetReset runs the pipeline to the end, stops it, resets the
// group's committed offsets on interactions to the start and restarts it:
// with its state folder, and with an empty one (state rebuilt from the
// changelog, offsets deleted). Nothing may be sent twice.
func TestReplayOffsetReset(t *testing.T) {
	sc := newScenario(scenarioConfig{Seed: 3, Users: 200, Businesses: 10, Interactions: 1500, Campaigns: 8})
	want, _ := expectedDeliveries(sc.Interactions, sc.Campaigns, defaultOracle)
	c := newCluster(t, "replay", 3)
	c.produceScenario(t, sc)
	dir := t.TempDir()
	h := startRunner(t, c, dir, nil)
	ids := campaignIDs(sc.Campaigns)
	c.waitSettled(t, ids, 60*time.Second, h.alive)
	before := c.checkInbox(t, sc, want)
	h.stop(t)

	ctx := testContext(t, 30*time.Second)
	marker := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)
	for round, fresh := range []bool{false, true} {
		// The group is empty: the runner left it on stop.
		if fresh {
			if _, err := c.adm.DeleteOffsets(ctx, c.group, kadm.TopicsSet{c.names.Interactions: {0: {}, 1: {}, 2: {}}}); err != nil {
				t.Fatalf("delete the group's offsets: %v", err)
			}
			dir = t.TempDir()
		} else {
			os := kadm.Offsets{}
			for p := range c.parts {
				os.AddOffset(c.names.Interactions, p, 0, -1)
			}
			resp, err := c.adm.CommitOffsets(ctx, c.group, os)
			if err == nil {
				err = resp.Error()
			}
			if err != nil {
				t.Fatalf("reset the group's offsets to the start: %v", err)
			}
		}
		committed, err := c.adm.FetchOffsets(ctx, c.group)
		if err != nil {
			t.Fatalf("fetch offsets: %v", err)
		}
		t.Logf("round %d (fresh state folder %v): committed offsets now %v", round, fresh, committed.Offsets())
		// A new interaction after everything: once it is processed, the
		// runner has gone over the whole replayed range.
		in := schemas.Interaction{EventID: fmt.Sprintf("marker-%d", round), UserID: userID(round), BusinessID: businessID(0), Kind: schemas.BusinessMessage, OccurredAt: marker.Add(time.Duration(round) * time.Hour)}
		c.produce(t, c.interactionRecord(t, &in))
		sc.Interactions = append(sc.Interactions, in)
		h = startRunner(t, c, dir, nil)
		c.waitSettled(t, ids, 60*time.Second, h.alive)
		after := c.checkInbox(t, sc, want)
		st := h.r.Stats()
		t.Logf("round %d: inbox records %d before, %d after; interactions processed by the restarted runner %d; deliveries %d",
			round, before.Records, after.Records, st.Interactions.Load(), st.Delivered())
		if after.Records != before.Records {
			t.Errorf("round %d: inbox has %d records after the replay, want %d (nothing sent twice)", round, after.Records, before.Records)
		}
		if got := st.Delivered(); got != 0 {
			t.Errorf("round %d: the restarted runner delivered %d messages, want 0", round, got)
		}
		h.stop(t)
	}
}

// TestRetentionForgetsBlock: a contact whose last event (a message, then a
// BLOCK) is older than the contact retention is forgotten with its state
// (DESIGN.md: "is forgotten, and its state expires"; policy.ContactExpired:
// a task tests expiry "when it loads a contact to apply an interaction, and
// starts from a zero Contact when it is expired, so that the outcome does
// not depend on when sweeps happened to run"). When the user writes again
// 400 days later, the new contact is not blocked, and a campaign reaches
// them. The outcome must be the same whatever the batching: once with
// every record in one transaction, once with one record per transaction.
func TestRetentionForgetsBlock(t *testing.T) {
	t0 := time.Date(2024, 6, 1, 0, 0, 0, 0, time.UTC)
	biz := "biz-ret"
	later := t0.Add(400 * 24 * time.Hour)
	camp := schemas.Campaign{CampaignID: "camp-ret", BusinessID: biz, Action: schemas.Launch, SendAt: later.Add(24 * time.Hour),
		ExpiresAt: later.Add(48 * time.Hour), Message: schemas.Message{Text: "back again"}}
	ins := []schemas.Interaction{
		{EventID: "1", UserID: "u-blocker", BusinessID: biz, Kind: schemas.UserMessage, OccurredAt: t0},
		{EventID: "2", UserID: "u-blocker", BusinessID: biz, Kind: schemas.Block, OccurredAt: t0.Add(time.Hour)},
		{EventID: "3", UserID: "u-other", BusinessID: biz, Kind: schemas.UserMessage, OccurredAt: later}, // moves the task's time on
		{EventID: "4", UserID: "u-blocker", BusinessID: biz, Kind: schemas.UserMessage, OccurredAt: later.Add(time.Minute)},
	}
	want := map[pairKey]delivery{
		{camp.CampaignID, "u-other"}:   {Campaign: camp.CampaignID, User: "u-other", Business: biz, SentAt: camp.SendAt},
		{camp.CampaignID, "u-blocker"}: {Campaign: camp.CampaignID, User: "u-blocker", Business: biz, SentAt: camp.SendAt},
	}
	eachBatching(t, "ret", scenario{Campaigns: []schemas.Campaign{camp}, Interactions: ins}, want, nil)
}

// eachBatching runs a small scenario on one partition twice, once with
// every record in one transaction and once with one record per
// transaction, checks the inbox against want each time, then calls check
// (if not nil) with the runner and the cluster.
func eachBatching(t *testing.T, group string, sc scenario, want map[pairKey]delivery, check func(t *testing.T, h *runner, c *cluster)) {
	t.Helper()
	for _, tc := range []struct {
		name string
		poll int
	}{{"one-transaction", 0}, {"one-record-per-transaction", 1}} {
		t.Run(tc.name, func(t *testing.T) {
			c := newCluster(t, group, 1)
			c.produceScenario(t, sc)
			h := startRunner(t, c, t.TempDir(), func(cfg *pipeline.Config) { cfg.MaxPollRecords = tc.poll })
			c.waitSettled(t, campaignIDs(sc.Campaigns), 30*time.Second, h.alive)
			rep := c.checkInbox(t, sc, want)
			if check != nil {
				check(t, h, c)
			}
			t.Logf("deliveries %d (want %d)", rep.Deliveries, len(want))
		})
	}
}

// TestCampaignWakesIdleInstance: a campaign published to an idle, caught-up
// instance fires when it arrives, not at the instance's next Tick (here ten
// minutes, longer than the test waits): the campaign reader ends the loop's
// idle poll.
func TestCampaignWakesIdleInstance(t *testing.T) {
	c := newCluster(t, "wake", 2)
	now := time.Now().UTC().Truncate(time.Millisecond)
	const biz = "biz-wake"
	var ins []schemas.Interaction
	var recs []*kgo.Record
	for i := range 20 {
		in := schemas.Interaction{EventID: fmt.Sprint(i), UserID: userID(i), BusinessID: biz, Kind: schemas.UserMessage, OccurredAt: now.Add(-time.Hour)}
		ins = append(ins, in)
		recs = append(recs, c.interactionRecord(t, &in))
	}
	c.produce(t, recs...)
	h := startRunner(t, c, t.TempDir(), func(cfg *pipeline.Config) { cfg.Tick = 10 * time.Minute })
	deadline := time.Now().Add(60 * time.Second)
	for h.r.Stats().Interactions.Load() < int64(len(ins)) {
		if err := h.alive(); err != nil {
			t.Fatal(err)
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d interactions processed after 60s", h.r.Stats().Interactions.Load(), len(ins))
		}
		time.Sleep(50 * time.Millisecond) // a polling interval, not an assertion
	}
	// Due by the wall clock only: the partitions' stream time is an hour
	// before it.
	camp := schemas.Campaign{CampaignID: "camp-wake", BusinessID: biz, Action: schemas.Launch, SendAt: now.Add(-time.Minute),
		ExpiresAt: now.Add(time.Hour), Message: schemas.Message{Text: "now"}}
	c.produce(t, c.campaignRecord(t, &camp))
	sc := scenario{Campaigns: []schemas.Campaign{camp}, Interactions: ins}
	want, _ := expectedDeliveries(ins, sc.Campaigns, defaultOracle)
	c.waitSettled(t, campaignIDs(sc.Campaigns), 60*time.Second, h.alive)
	rep := c.checkInbox(t, sc, want)
	if rep.Deliveries != len(ins) {
		t.Fatalf("deliveries %d, want %d", rep.Deliveries, len(ins))
	}
}
