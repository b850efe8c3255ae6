package e2e

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sponsored/sponsor/deadletter"
	"github.com/sponsored/sponsor/ops/redrive"
	"github.com/sponsored/sponsor/pipeline"
	"github.com/sponsored/sponsor/policy"
	"github.com/sponsored/sponsor/schemas"
)

// lateGrace is the grace of the out-of-order tests: every interaction
// arrives at most this late.
const lateGrace = 10 * time.Minute

// nearSendAt adds, for each campaign of sc, three users whose interactions
// sit minutes around its send_at: a first contact 2 minutes before it
// (delivered), a block 1 minute before it of a contact made hours earlier
// (blocked), and a first contact 1 minute after it (no contact as of the
// send time). It returns the history with them, in event-time order, and
// the event ids whose arrival must be as late as the grace allows (the
// ones before the send time) or not late at all (the one after), so that
// in arrival order every campaign's send time lies between them.
func nearSendAt(sc scenario) (ins []schemas.Interaction, latest, earliest map[string]bool) {
	ins = slices.Clone(sc.Interactions)
	latest, earliest = map[string]bool{}, map[string]bool{}
	add := func(id, user, biz string, kind schemas.InteractionKind, at time.Time) {
		ins = append(ins, schemas.Interaction{EventID: id, UserID: user, BusinessID: biz, Kind: kind, OccurredAt: at})
	}
	for i, c := range firingCampaigns(sc.Campaigns) {
		if c.SendAt.After(histEnd) {
			continue // fired by the wall clock, after every interaction
		}
		// A few milliseconds apart from everything else: no ties.
		ms := time.Duration(i+1) * time.Millisecond
		first, blocker, after := fmt.Sprintf("near-first-%02d", i), fmt.Sprintf("near-block-%02d", i), fmt.Sprintf("near-after-%02d", i)
		add("ev-"+first, first, c.BusinessID, schemas.UserMessage, c.SendAt.Add(-2*time.Minute+ms))
		add("ev-"+blocker+"-msg", blocker, c.BusinessID, schemas.UserMessage, c.SendAt.Add(-5*time.Hour+ms))
		add("ev-"+blocker, blocker, c.BusinessID, schemas.Block, c.SendAt.Add(-time.Minute+ms))
		add("ev-"+after, after, c.BusinessID, schemas.UserMessage, c.SendAt.Add(time.Minute+ms))
		latest["ev-"+first], latest["ev-"+blocker], earliest["ev-"+after] = true, true, true
	}
	slices.SortStableFunc(ins, func(a, b schemas.Interaction) int { return a.OccurredAt.Compare(b.OccurredAt) })
	return ins, latest, earliest
}

// arrival is an interaction as a producer sends it: in arrival order, with
// the record timestamp its client stamps (the arrival time).
type arrival struct {
	in schemas.Interaction
	at time.Time // arrival: occurred_at plus a delay of at most the grace
}

// shuffleWithin delays each interaction by a random amount up to grace
// (the most for those in latest, none for those in earliest) and returns
// them in arrival order: each record is at most grace behind the newest
// before it, as the grace allows.
func shuffleWithin(ins []schemas.Interaction, grace time.Duration, seed uint64, latest, earliest map[string]bool) []arrival {
	rng := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	out := make([]arrival, len(ins))
	for i, in := range ins {
		d := time.Duration(rng.Int64N(int64(grace) + 1)).Truncate(time.Millisecond)
		switch {
		case latest[in.EventID]:
			d = grace
		case earliest[in.EventID]:
			d = 0
		}
		out[i] = arrival{in: in, at: in.OccurredAt.Add(d)}
	}
	slices.SortStableFunc(out, func(a, b arrival) int { return a.at.Compare(b.at) })
	return out
}

// produceArrivals publishes the campaigns, then the interactions in arrival
// order, each stamped with its arrival time.
func (c *cluster) produceArrivals(t *testing.T, camps []schemas.Campaign, arrivals []arrival) {
	t.Helper()
	var recs []*kgo.Record
	for i := range camps {
		recs = append(recs, c.campaignRecord(t, &camps[i]))
	}
	c.produce(t, recs...)
	recs = recs[:0]
	for i := range arrivals {
		r := c.interactionRecord(t, &arrivals[i].in)
		r.Timestamp = arrivals[i].at
		recs = append(recs, r)
	}
	c.produce(t, recs...)
}

// TestOutOfOrderWithinGrace: a seeded history delivered out of event-time
// order, each interaction up to the grace late, gives with --grace exactly
// the inbox the rules give in event time (the oracle, which reads the
// history sorted). The negative control runs the same arrivals with no
// grace and must be caught: the checker sees the deliveries differ.
func TestOutOfOrderWithinGrace(t *testing.T) {
	sc := newScenario(scenarioConfig{Seed: 29, Users: 400, Businesses: 10, Interactions: 4000, Campaigns: 14})
	ins, latest, earliest := nearSendAt(sc)
	want, tally := expectedDeliveries(ins, sc.Campaigns, defaultOracle)
	logTally(t, tally)
	arrivals := shuffleWithin(ins, lateGrace, 29, latest, earliest)
	moved := 0
	for i := range arrivals {
		if arrivals[i].in.EventID != ins[i].EventID {
			moved++
		}
	}
	t.Logf("%d interactions, %d out of their event-time place in arrival order, up to %s late", len(ins), moved, lateGrace)

	for _, tc := range []struct {
		name  string
		grace time.Duration
	}{{"grace", lateGrace}, {"no-grace-negative-control", 0}} {
		t.Run(tc.name, func(t *testing.T) {
			c := newCluster(t, "late", 4)
			c.produceArrivals(t, sc.Campaigns, arrivals)
			h := startRunner(t, c, t.TempDir(), func(cfg *pipeline.Config) {
				cfg.Policy = policy.DefaultConfig()
				cfg.Policy.Grace = tc.grace
			})
			c.waitSettled(t, campaignIDs(sc.Campaigns), 120*time.Second, h.alive)
			rep := compareInbox(c.serde, c.readAll(t, c.names.Inbox), want, sc.Campaigns, c.parts)
			st := h.r.Stats()
			var late int64
			for k := range st.Late {
				late += st.Late[k].Load()
			}
			t.Logf("records %d, late (beyond the grace) %d, dead letters %d; inbox records %d, deliveries %d, expected %d, duplicates %d, missing %d, extra %d",
				len(arrivals), late, st.DeadLetters.Load(), rep.Records, rep.Deliveries, rep.Expected, len(rep.Duplicates), len(rep.Missing), len(rep.Extra))
			if tc.grace == 0 {
				// Each campaign before the end of the history has a first
				// contact that arrives after it fired, and a block too.
				if rep.ok() {
					t.Fatalf("negative control: with no grace the inbox equals the oracle's, so the checker cannot tell; want missing and extra deliveries")
				}
				if len(rep.Missing) == 0 || len(rep.Extra) == 0 {
					t.Errorf("negative control: want both missing and extra deliveries with no grace, got %s", rep)
				}
				if late == 0 {
					t.Errorf("negative control: no interaction counted late with no grace")
				}
				// The blocks a minute before each send_at arrive after
				// the delivery they would have stopped.
				if n := st.LateSuppressions[schemas.Block].Load(); n == 0 {
					t.Errorf("negative control: no late BLOCK counted after a delivery it would have stopped")
				} else {
					t.Logf("late blocks after a delivery they would have stopped: %d", n)
				}
				return
			}
			if !rep.ok() {
				t.Errorf("inbox differs from the rules in event time with a grace of %s: %s", tc.grace, rep)
			}
			if late != 0 {
				t.Errorf("%d interactions counted late, want 0: every one is within the grace", late)
			}
			if got := st.DeadLetters.Load(); got != 0 {
				t.Errorf("%d dead letters, want 0", got)
			}
		})
	}
}

// TestWrongClocks: a few dozen interactions stamped hours ahead of the
// records around them (a phone with a wrong clock) neither move the
// partitions' stream time nor reach the state: the inbox is the rules' for
// the history without them, and every one is in the dead-letter topic with
// the reason clock-skew.
func TestWrongClocks(t *testing.T) {
	sc := newScenario(scenarioConfig{Seed: 37, Users: 400, Businesses: 10, Interactions: 4000, Campaigns: 14})
	want, _ := expectedDeliveries(sc.Interactions, sc.Campaigns, defaultOracle)
	rng := rand.New(rand.NewPCG(37, 1))
	arrivals := make([]arrival, 0, len(sc.Interactions)+40)
	wrong := map[string]bool{}
	for i, in := range sc.Interactions {
		arrivals = append(arrivals, arrival{in: in, at: in.OccurredAt})
		if i%100 != 50 || in.OccurredAt.After(histEnd) {
			continue
		}
		// 1 to 48 hours ahead, a new user: were it applied, it would be a
		// contact (and a delivery) of its own, and move the stream time.
		ahead := time.Duration(1+rng.IntN(48)) * time.Hour
		id := fmt.Sprintf("wrong-clock-%03d", len(wrong))
		wrong[id] = true
		arrivals = append(arrivals, arrival{
			in: schemas.Interaction{EventID: id, UserID: "user-" + id, BusinessID: in.BusinessID, Kind: schemas.UserMessage, OccurredAt: in.OccurredAt.Add(ahead)},
			at: in.OccurredAt,
		})
		if in.BusinessID == "" {
			arrivals[len(arrivals)-1].in.BusinessID = businessID(0)
		}
	}
	c := newCluster(t, "clock", 4)
	c.produceArrivals(t, sc.Campaigns, arrivals)
	h := startRunner(t, c, t.TempDir(), nil)
	c.waitSettled(t, campaignIDs(sc.Campaigns), 120*time.Second, h.alive)
	rep := compareInbox(c.serde, c.readAll(t, c.names.Inbox), want, sc.Campaigns, c.parts)
	if !rep.ok() {
		t.Errorf("inbox differs from the rules for the history without the wrong clocks: %s", rep)
	}
	dead := map[string]bool{}
	for _, r := range c.readAll(t, c.names.DeadLetter) {
		if got := deadletter.Parse(r).Reason; got != deadletter.ReasonClockSkew {
			t.Errorf("dead letter with reason %q, want %q", got, deadletter.ReasonClockSkew)
			continue
		}
		in, err := c.serde.DecodeInteraction(r.Value)
		if err != nil {
			t.Fatalf("decode dead letter: %v", err)
		}
		if !strings.HasPrefix(in.EventID, "wrong-clock-") {
			t.Errorf("interaction %s (occurred_at %s) dead-lettered for its clock", in.EventID, in.OccurredAt)
		}
		dead[in.EventID] = true
	}
	for id := range wrong {
		if !dead[id] {
			t.Errorf("wrong-clock interaction %s is not in the dead-letter topic", id)
		}
	}
	t.Logf("records %d, wrong clocks %d, dead-lettered %d; inbox records %d, deliveries %d, expected %d, duplicates %d, missing %d, extra %d",
		len(arrivals), len(wrong), len(dead), rep.Records, rep.Deliveries, rep.Expected, len(rep.Duplicates), len(rep.Missing), len(rep.Extra))

	// Their time has come (it is in the past now): a redrive stamps them
	// anew and the pipeline applies them, late, for later campaigns only.
	before := h.r.Stats().Interactions.Load()
	ctx := testContext(t, 2*time.Minute)
	rcfg := redrive.Config{Brokers: c.brokers, Names: c.names, Group: c.group, Reason: string(deadletter.ReasonClockSkew)}
	plan, err := redrive.MakePlan(ctx, rcfg)
	if err != nil {
		t.Fatalf("redrive plan: %v", err)
	}
	if plan.Total() != int64(len(wrong)) {
		t.Fatalf("redrive plan has %d dead letters, want %d", plan.Total(), len(wrong))
	}
	if _, err := redrive.Run(ctx, rcfg, plan); err != nil {
		t.Fatalf("redrive: %v", err)
	}
	deadline := time.Now().Add(60 * time.Second)
	for h.r.Stats().Interactions.Load() < before+int64(len(wrong)) {
		if err := h.alive(); err != nil {
			t.Fatal(err)
		}
		if time.Now().After(deadline) {
			t.Fatalf("after the redrive %d interactions processed, want %d more than %d", h.r.Stats().Interactions.Load()-before, len(wrong), before)
		}
		time.Sleep(50 * time.Millisecond) // a polling interval, not an assertion
	}
	if got := h.r.Stats().DeadLetters.Load(); got != int64(len(wrong)) {
		t.Errorf("dead letters after the redrive: %d, want still %d (none again)", got, len(wrong))
	}
	if rep := compareInbox(c.serde, c.readAll(t, c.names.Inbox), want, sc.Campaigns, c.parts); !rep.ok() {
		t.Errorf("inbox after the redrive: %s", rep)
	}
}

// TestErasureCoversThePast: an interaction from before a user's erasure
// that arrives after it (one second before, and one far behind) is not
// stored, so the erased user gets nothing from it; an interaction after the
// erasure makes a new contact that the campaign reaches. Both on one
// partition, in one transaction and in one record per transaction.
func TestErasureCoversThePast(t *testing.T) {
	t0 := time.Date(2025, 5, 1, 9, 0, 0, 0, time.UTC)
	const biz = "biz-erase"
	erased := t0.Add(time.Hour)
	camp := schemas.Campaign{CampaignID: "camp-erase", BusinessID: biz, Action: schemas.Launch, SendAt: erased.Add(2 * time.Hour),
		ExpiresAt: erased.Add(48 * time.Hour), Message: schemas.Message{Text: "after the erasure"}}
	ins := []schemas.Interaction{
		{EventID: "1", UserID: "u-gone", BusinessID: biz, Kind: schemas.UserMessage, OccurredAt: t0},
		{EventID: "2", UserID: "u-back", BusinessID: biz, Kind: schemas.UserMessage, OccurredAt: t0},
		{EventID: "3", UserID: "u-gone", Kind: schemas.UserErased, OccurredAt: erased},
		{EventID: "4", UserID: "u-back", Kind: schemas.UserErased, OccurredAt: erased},
		{EventID: "5", UserID: "u-other", BusinessID: biz, Kind: schemas.UserMessage, OccurredAt: erased.Add(time.Minute)}, // moves the stream time on
		{EventID: "6", UserID: "u-gone", BusinessID: biz, Kind: schemas.BotCTAClick, OccurredAt: erased.Add(-time.Second)}, // late, before the erasure
		{EventID: "7", UserID: "u-gone", BusinessID: "biz-new", Kind: schemas.UserMessage, OccurredAt: t0.Add(-48 * time.Hour)},
		{EventID: "8", UserID: "u-back", BusinessID: biz, Kind: schemas.BotStarted, OccurredAt: erased.Add(time.Second)}, // after it: a new contact
		{EventID: "9", UserID: "u-other", BusinessID: biz, Kind: schemas.UserMessage, OccurredAt: camp.SendAt.Add(time.Minute)},
	}
	want := map[pairKey]delivery{
		{camp.CampaignID, "u-other"}: {Campaign: camp.CampaignID, User: "u-other", Business: biz, SentAt: camp.SendAt},
		{camp.CampaignID, "u-back"}:  {Campaign: camp.CampaignID, User: "u-back", Business: biz, SentAt: camp.SendAt},
	}
	eachBatching(t, "erase", scenario{Campaigns: []schemas.Campaign{camp}, Interactions: ins}, want, func(t *testing.T, h *runner, c *cluster) {
		if got := h.r.Stats().Erased.Load(); got != 2 {
			t.Errorf("Stats().Erased = %d, want 2 (the two interactions from before u-gone's erasure)", got)
		}
		if n := len(c.readAll(t, c.names.DeadLetter)); n != 0 {
			t.Errorf("%d dead letters: an erased user's past must not be copied anywhere", n)
		}
	})
}
