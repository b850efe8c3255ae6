package policy_test

import (
	"fmt"
	"maps"
	"slices"
	"testing"
	"time"

	"github.com/sponsored/sponsor/policy"
	"github.com/sponsored/sponsor/schemas"
	"github.com/sponsored/sponsor/state"
)

// partitionRun drives a policy.Partition transaction by transaction as the
// runtime does (begin, work, a small expiry sweep, finish, commit), over
// state.Batch on a Pebble in memory, and records its outputs.
type partitionRun struct {
	t      testing.TB
	pol    *policy.Policy
	store  *state.Store
	part   *policy.Partition
	batch  *state.Batch
	out    recorder
	budget int   // decisions per transaction
	next   int64 // the next checkpoint
	// finished, if set, sees each transaction's batch before it commits.
	finished func(*state.Batch)
	// topic is the campaigns records launchAt read, by offset: restart
	// replays them.
	topic []schemas.Campaign
}

// recorder is an Output that keeps the deliveries and the tallies of the
// transaction in progress.
type recorder struct {
	delivered []string // users, in order
	tallies   map[policy.Tally]int
	pairs     map[string]int           // if set, counts each campaign/user delivered
	chunks    *[]string                // if set, gets each chunk's campaign, "+" when it finished it
	reasons   map[string]policy.Reason // if set, gets each decision by campaign/user
}

func (*recorder) Chunking(*policy.Progress) {}
func (r *recorder) Decided(c *policy.Progress, user string, reason policy.Reason) error {
	if r.reasons != nil {
		r.reasons[c.Campaign.ID+"/"+user] = reason
	}
	if reason == policy.Delivered {
		r.delivered = append(r.delivered, user)
		if r.pairs != nil {
			r.pairs[c.Campaign.ID+"/"+user]++
		}
	}
	return nil
}
func (r *recorder) Chunked(c *policy.Progress, ch policy.Chunk) error {
	if r.chunks != nil {
		id := c.Campaign.ID
		if ch.Done {
			id += "+"
		}
		*r.chunks = append(*r.chunks, id)
	}
	return nil
}
func (r *recorder) Counted(tally policy.Tally, _ schemas.InteractionKind) {
	if r.tallies == nil {
		r.tallies = map[policy.Tally]int{}
	}
	r.tallies[tally]++
}

// sweepPerTxn is the runtime's expiry sweep limit per transaction.
const sweepPerTxn = 256

// newPartitionRun starts a partition of the rules cfgf makes of the
// defaults, with grace, in its first transaction.
func newPartitionRun(t testing.TB, grace time.Duration, budget int, cfgf func(*policy.Config)) *partitionRun {
	t.Helper()
	cfg := policy.DefaultConfig()
	cfg.Grace = grace
	if cfgf != nil {
		cfgf(&cfg)
	}
	pol, err := policy.New(cfg)
	must(t, err)
	r := &partitionRun{t: t, pol: pol, store: openStore(t), part: policy.NewPartition(pol), budget: budget}
	r.load()
	r.begin()
	t.Cleanup(func() { r.batch.Close() })
	return r
}

// load (re)reads the partition's state from the store, as a restart does.
func (r *partitionRun) load() {
	r.t.Helper()
	meta, cs, err := r.store.LoadTask(partition)
	must(r.t, err)
	r.part.Load(meta, cs)
}

func (r *partitionRun) begin() {
	r.batch = r.store.NewBatch(partition)
	r.out = recorder{}
	r.part.Begin(r.batch, &r.out, r.budget)
}

// commit ends the transaction (a sweep, the metadata, the commit), begins
// the next and returns the users delivered to in the one it ended.
func (r *partitionRun) commit() []string {
	r.t.Helper()
	must(r.t, r.part.Expire(sweepPerTxn))
	must(r.t, r.part.Finish())
	if r.finished != nil {
		r.finished(r.batch)
	}
	r.next++
	must(r.t, r.batch.Commit(r.next))
	delivered := r.out.delivered
	r.begin()
	return delivered
}

// restart drops the transaction in progress and reloads the state, with
// the campaigns replayed from the topic as the runtime does.
func (r *partitionRun) restart() {
	r.batch.Close()
	r.part = policy.NewPartition(r.pol)
	r.load()
	for off := r.part.ReplayOffset(0); off < r.part.CampaignOffset(0); off++ {
		r.part.Replay(&r.topic[off], policy.Source{Offset: off})
	}
	r.begin()
}

// interaction applies an interaction; it reports false when it had to wait
// for the fan-outs (the budget).
func (r *partitionRun) interaction(user, biz string, kind schemas.InteractionKind, at time.Time) bool {
	r.t.Helper()
	ok, err := r.part.Interaction(user, biz, kind, at.UnixMilli())
	must(r.t, err)
	return ok
}

// launch admits a LAUNCH of campaign id of biz, sent at send, expiring two
// days later.
func (r *partitionRun) launch(id, biz string, send time.Time) {
	r.t.Helper()
	c := &schemas.Campaign{CampaignID: id, BusinessID: biz, Action: schemas.Launch, SendAt: send, ExpiresAt: send.Add(48 * time.Hour), Message: schemas.Message{Text: "hi " + id}}
	if _, err := r.part.Admit(c, policy.NoSource); err != nil {
		r.t.Fatal(err)
	}
}

// launchAt admits a LAUNCH of campaign id of biz, sent at send, expiring
// two days later, read at offset off of campaigns partition 0.
func (r *partitionRun) launchAt(id, biz string, send time.Time, off int64) {
	r.t.Helper()
	c := &schemas.Campaign{CampaignID: id, BusinessID: biz, Action: schemas.Launch, SendAt: send, ExpiresAt: send.Add(48 * time.Hour), Message: schemas.Message{Text: "hi " + id}}
	if _, err := r.part.Admit(c, policy.Source{Offset: off}); err != nil {
		r.t.Fatal(err)
	}
	r.part.SetCampaignOffset(0, off+1)
	for int64(len(r.topic)) <= off {
		r.topic = append(r.topic, schemas.Campaign{})
	}
	r.topic[off] = *c
}

// fanout continues the fan-outs, as the runtime does after a
// transaction's interactions; it reports whether they all finished.
func (r *partitionRun) fanout() bool {
	r.t.Helper()
	ok, err := r.part.Fanout()
	must(r.t, err)
	return ok
}

// count returns how many of users are u.
func count(users []string, u string) int {
	n := 0
	for _, v := range users {
		if v == u {
			n++
		}
	}
	return n
}

// lateLaunchBehindStarted plays the scenario of the two tests below and
// returns how many messages user u gets from business B. Business A has
// three contacts, B one (u); with a budget of 2, cA (01:00) and cB (02:00)
// start at once on an interaction at 05:00, and cA's first chunk uses the
// budget, so cB has not run a chunk yet when a late LAUNCH of B, cLate
// (send 00:30), is read in the next transaction (after a restart, when
// restart is set).
func lateLaunchBehindStarted(t *testing.T, grace time.Duration, restart bool) int {
	t.Helper()
	r := newPartitionRun(t, grace, 2, nil)
	t0 := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)
	for _, u := range []string{"a1", "a2", "a3"} {
		r.interaction(u, "A", schemas.UserMessage, t0)
	}
	r.interaction("u", "B", schemas.UserMessage, t0)
	r.launch("cA", "A", t0.Add(1*time.Hour))
	r.launch("cB", "B", t0.Add(2*time.Hour))
	delivered := r.commit()
	// An interaction of another business flows beside the fan-outs.
	if !r.interaction("x", "Z", schemas.UserMessage, t0.Add(5*time.Hour)) || !r.part.FanningOut() {
		t.Fatal("the interaction waited, or the fan-outs ended; want it applied beside them")
	}
	delivered = append(delivered, r.commit()...)
	if restart {
		r.restart()
	}
	r.budget = 100
	r.begin()
	r.launch("cLate", "B", t0.Add(30*time.Minute))
	r.interaction("x", "Z", schemas.UserMessage, t0.Add(5*time.Hour))
	delivered = append(delivered, r.commit()...)
	return count(delivered, "u")
}

// TestLateLaunchBehindStartedCampaign: a late LAUNCH read while an earlier
// campaign of its business has started but not run a chunk must fire as of
// no earlier time than that one (startFiring raises the stream time), so
// the user gets one message from the business, not two within 24 hours.
func TestLateLaunchBehindStartedCampaign(t *testing.T) {
	for _, grace := range []time.Duration{0, 10 * time.Minute} {
		if n := lateLaunchBehindStarted(t, grace, false); n != 1 {
			t.Errorf("grace %s: u received %d messages from B within 24 hours (rule 4: at most one)", grace, n)
		}
	}
}

// TestLateLaunchAfterRestart: the same with the instance restarting (Load)
// before the transaction that reads the late LAUNCH: the user gets the one
// message as without the restart.
func TestLateLaunchAfterRestart(t *testing.T) {
	for _, grace := range []time.Duration{0, 10 * time.Minute} {
		if n := lateLaunchBehindStarted(t, grace, true); n != 1 {
			t.Errorf("grace %s, with a restart: u received %d messages from B within 24 hours, want 1", grace, n)
		}
	}
}

// TestDuplicateErasureKeepsLaterContact: a user erased at t1 contacts b1
// again after it; the erasure's record is delivered again (a duplicate).
// The contact made after the erasure stays, and the next campaign reaches
// the user.
func TestDuplicateErasureKeepsLaterContact(t *testing.T) {
	for _, grace := range []time.Duration{0, 10 * time.Minute} {
		t.Run(grace.String(), func(t *testing.T) {
			r := newPartitionRun(t, grace, 100, nil)
			t0 := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)
			r.interaction("u", "b1", schemas.UserMessage, t0)
			r.interaction("u", "", schemas.UserErased, t0.Add(time.Hour))
			r.interaction("u", "b1", schemas.UserMessage, t0.Add(2*time.Hour))
			// the stream goes on past the grace
			r.interaction("x", "Z", schemas.UserMessage, t0.Add(3*time.Hour))
			r.interaction("u", "b1", schemas.BotStarted, t0.Add(3*time.Hour)) // folds the 2h message
			r.commit()
			c, known := contactOf(t, r.part, "u", "b1")
			t.Logf("before the duplicate: known %v, contact %+v", known, c)
			r.interaction("u", "", schemas.UserErased, t0.Add(time.Hour))
			r.commit()
			c, known = contactOf(t, r.part, "u", "b1")
			t.Logf("after the duplicate: known %v, contact %+v", known, c)
			if !known || c.LastContact() == 0 {
				t.Errorf("after a duplicate of the erasure at t0+1h, the contact made at t0+2h and t0+3h is gone: known %v, %+v", known, c)
			}
			r.launch("c1", "b1", t0.Add(4*time.Hour))
			r.interaction("x", "Z", schemas.UserMessage, t0.Add(5*time.Hour))
			if got := r.commit(); len(got) != 1 {
				t.Errorf("deliveries %v, want one to u (contact after the erasure)", got)
			}
		})
	}
}

// TestErasedPastAfterTheMarker: long after an erasure (past the contact
// retention, many sweep rounds), an interaction from before it is still not
// stored: the marker stays while the user has a contact made after the
// erasure (a late BLOCK from before it does not suppress that contact), and
// a new contact forgotten on arrival is not written at all.
func TestErasedPastAfterTheMarker(t *testing.T) {
	r := newPartitionRun(t, 0, 100, func(c *policy.Config) { c.ContactRetention = 48 * time.Hour })
	t0 := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)
	t1 := t0.Add(time.Hour) // the erasure
	r.interaction("u", "b1", schemas.UserMessage, t0)
	r.interaction("u", "", schemas.UserErased, t1)
	r.interaction("u", "b1", schemas.UserMessage, t1.Add(time.Hour))
	r.commit()
	// The user keeps talking to b1 for days; the stream moves on.
	for d := 1; d <= 4; d++ {
		r.interaction("u", "b1", schemas.UserMessage, t1.Add(time.Duration(d)*24*time.Hour))
		r.commit()
		r.commit()
	}
	if _, ok, _ := r.batch.Erasure("u"); !ok {
		t.Fatalf("the marker is gone while u has a contact made after the erasure")
	}
	// A very late BLOCK from before the erasure, and a late first contact
	// with b2 from before the erasure.
	r.interaction("u", "b1", schemas.Block, t1.Add(-30*time.Minute))
	r.interaction("u", "b2", schemas.UserMessage, t1.Add(-20*time.Minute))
	if c, ok, _ := r.batch.Contact("u", "b2"); ok {
		t.Errorf("an interaction from before the erasure is stored: u/b2 %+v", c)
	}
	if c, _, _ := r.batch.Contact("u", "b1"); c.Blocked {
		t.Errorf("a BLOCK from before the erasure suppresses the contact made after it: %+v", c)
	}
	for _, ch := range r.batch.Changes() {
		if len(ch.Key) > 0 && ch.Key[0] == 'c' {
			t.Errorf("changelog record for an interaction from before the erasure: %q", ch.Key)
		}
	}
	if n := r.out.tallies[policy.Erased]; n != 2 {
		t.Errorf("%d interactions counted as erased, want 2", n)
	}
}

// TestWallClockGraceBoundary: a campaign fired by the wall clock raises the
// stream time past send_at + grace, so a first contact exactly at send_at
// read afterwards, which the campaign could not count, is counted late.
func TestWallClockGraceBoundary(t *testing.T) {
	r := newPartitionRun(t, 10*time.Minute, 100, nil)
	s := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	r.launch("c1", "b1", s)
	must(t, r.part.FireByWallClock(s.Add(10*time.Minute+time.Millisecond).UnixMilli()))
	r.commit()
	t.Logf("stream time %d, watermark %d", r.part.Time(), r.part.Watermark())
	r.interaction("u", "b1", schemas.UserMessage, s)
	if r.out.tallies[policy.Late] == 0 {
		t.Errorf("the interaction at send_at, read after c1 fired without it, is not counted late")
	}
	if st := r.part.Campaign("c1").Status; st != policy.Fired {
		t.Fatalf("c1 %s", st)
	}
}

// TestRetentionGapInGrace: the story testdata/grace-retention with a sweep
// in every transaction (grace 1h, retention 2d): a block forgotten with its
// contact before an interaction the grace holds apart stays forgotten, in
// both arrival orders.
func TestRetentionGapInGrace(t *testing.T) {
	for _, order := range []string{"sorted", "u2-first"} {
		t.Run(order, func(t *testing.T) {
			r := newPartitionRun(t, time.Hour, 100, func(c *policy.Config) { c.ContactRetention = 48 * time.Hour })
			t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
			r.interaction("u1", "b1", schemas.UserMessage, t0)
			r.interaction("u1", "b1", schemas.Block, t0)
			r.launch("c1", "b1", t0.Add(49*time.Hour))
			um := func() { r.interaction("u1", "b1", schemas.UserMessage, t0.Add(48*time.Hour+30*time.Minute)) }
			x := func() { r.interaction("u2", "b2", schemas.UserMessage, t0.Add(49*time.Hour+10*time.Minute)) }
			if order == "sorted" {
				um()
				x()
			} else {
				x()
				um()
			}
			r.commit()
			r.interaction("u3", "b3", schemas.UserMessage, t0.Add(50*time.Hour+time.Minute))
			if got := r.commit(); count(got, "u1") != 1 {
				t.Errorf("%s: deliveries %v; the rules: 1 to u1 (the block of Jan 1 is forgotten on Jan 3 00:00, a new contact at 00:30)", order, got)
			}
		})
	}
}

// TestWallClockFireRaisesStreamTime: a campaign fired by the wall clock on a
// partition whose stream time is behind its send_at decides as of send_at,
// so the partition's time moves past it as soon as it starts firing
// (startFiring's raiseTime), before its first chunk: a LAUNCH of the same
// business with an earlier send_at read before that chunk fires as of no
// earlier time (rule 4 sees the business's deliveries in order, and the
// user gets one message of the business), and, with a grace, an
// interaction at the fire time read after the fan-out is late (it came
// after the decision it would have counted in).
func TestWallClockFireRaisesStreamTime(t *testing.T) {
	for _, grace := range []time.Duration{0, 10 * time.Minute} {
		r := newPartitionRun(t, grace, 0, nil) // no chunk in the firing transaction
		t0 := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)
		send := t0.Add(time.Hour)
		r.interaction("u", "B", schemas.UserMessage, t0)
		r.launch("c1", "B", send)
		r.commit()
		must(t, r.part.FireByWallClock(send.Add(grace+time.Second).UnixMilli()))
		if want := r.pol.AfterFire(send.UnixMilli()); r.part.Time() < want {
			t.Errorf("grace %s: stream time %d once c1 started firing, want at least %d (Policy.AfterFire)", grace, r.part.Time(), want)
		}
		r.launch("c2", "B", t0.Add(30*time.Minute))
		c1, c2 := r.part.Campaign("c1"), r.part.Campaign("c2")
		if c2 == nil || c2.FireAt < c1.FireAt {
			t.Errorf("grace %s: c2 %+v read behind the started c1 (fire at %d), want it fired as of no earlier time", grace, c2, c1.FireAt)
		}
		r.budget = 100
		delivered := r.commit()
		must(t, r.part.FireByWallClock(send.Add(grace+2*time.Second).UnixMilli()))
		delivered = append(delivered, r.commit()...)
		if n := count(delivered, "u"); n != 1 {
			t.Errorf("grace %s: u received %d messages from B within the hour, want 1", grace, n)
		}
		r.interaction("v", "B", schemas.UserMessage, send)
		// With no grace an interaction at the watermark is not late
		// (Policy.AfterFire); with one, the watermark is past the fire time.
		if n, want := r.out.tallies[policy.Late], min(int(grace), 1); n != want {
			t.Errorf("grace %s: an interaction at the fire time after the fire counted late %d times, want %d", grace, n, want)
		}
	}
}

// campaignRun plays many campaigns of a few businesses (two with more
// contacts than a transaction's budget) with duplicates and a cancel,
// restarting after every transaction when restart is set, and returns the
// deliveries as campaign/user pairs with their counts, and the run.
func campaignRun(t *testing.T, restart bool) (map[string]int, *partitionRun) {
	r := newPartitionRun(t, 0, 3, nil)
	day := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for i, n := range []int{7, 4, 1, 0} {
		for u := range n {
			r.interaction(fmt.Sprintf("u%d", u), fmt.Sprintf("b%d", i), schemas.UserMessage, day)
		}
	}
	r.commit()
	got := map[string]int{}
	r.out.pairs = got
	off := int64(0)
	commit := func() {
		r.commit()
		r.out.pairs = got
		if restart {
			r.restart()
			r.out.pairs = got
		}
	}
	at := day.Add(time.Hour)
	for i := range 12 {
		biz := fmt.Sprintf("b%d", i%4)
		id := fmt.Sprintf("c%02d", i)
		r.launchAt(id, biz, at.Add(time.Duration(i%3)*time.Minute), off)
		off++
		if i%4 == 1 { // a duplicate LAUNCH before the fire
			r.launchAt(id, biz, at.Add(time.Duration(i%3)*time.Minute), off)
			off++
		}
		commit()
		if i%3 == 2 {
			at = at.Add(25 * time.Hour)
			for !r.interaction("u0", "b0", schemas.UserMessage, at) {
				commit()
			}
			commit()
			for !r.fanout() {
				commit()
			}
			commit()
			// A duplicate LAUNCH after the fire, and a CANCEL.
			r.launchAt(id, biz, at.Add(-25*time.Hour), off)
			off++
			r.topic = append(r.topic, schemas.Campaign{CampaignID: id, BusinessID: biz, Action: schemas.Cancel})
			if _, err := r.part.Admit(&r.topic[off], policy.Source{Offset: off}); err != nil {
				t.Fatal(err)
			}
			off++
			r.part.SetCampaignOffset(0, off)
			commit()
		}
	}
	// Past every expiry, a LAUNCH again of the first campaign expires on
	// arrival.
	at = at.Add(10 * 24 * time.Hour)
	for !r.interaction("u0", "b0", schemas.UserMessage, at) {
		commit()
	}
	commit()
	for !r.fanout() {
		commit()
	}
	commit()
	r.launchAt("c00", "b0", day.Add(time.Hour), off)
	commit()
	return got, r
}

// TestRestartGivesTheSameDeliveries: a task that restarts (rebuilding its
// campaigns from the changelog and the campaigns topic) after every
// transaction, between the chunks of fan-outs, after fires, with
// duplicate LAUNCHes before and after the fire and after the expiry,
// delivers exactly what one that never restarts delivers, each pair once.
func TestRestartGivesTheSameDeliveries(t *testing.T) {
	want, _ := campaignRun(t, false)
	got, r := campaignRun(t, true)
	if len(want) == 0 || !maps.Equal(got, want) {
		t.Fatalf("with restarts: %v\nwithout: %v", got, want)
	}
	for pair, n := range got {
		if n != 1 {
			t.Errorf("%s delivered %d times", pair, n)
		}
	}
	// Past every expiry nothing is remembered, and nothing is to be
	// replayed.
	must(t, r.part.Expire(sweepPerTxn))
	if n := r.part.Campaigns(); n > 1 {
		t.Errorf("%d campaigns remembered past every expiry, want at most the last LAUNCH", n)
	}
	r.commit()
	if from, end := r.part.ReplayOffset(0), r.part.CampaignOffset(0); from != end {
		t.Errorf("replay offset %d, want the campaigns offset %d once every campaign is forgotten", from, end)
	}
}

// TestNoRecordWithoutWork: a campaign whose business has no contact on the
// partition, or all its candidates in one chunk, writes no campaign record;
// one whose fan-out takes two transactions writes its cursor and deletes it.
func TestNoRecordWithoutWork(t *testing.T) {
	for _, tc := range []struct {
		biz     string
		records int
	}{{"b9", 0}, {"b1", 0}, {"b0", 2}} {
		r := newPartitionRun(t, 0, 3, nil)
		day := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
		for u := range 5 {
			r.interaction(fmt.Sprintf("u%d", u), "b0", schemas.UserMessage, day)
		}
		r.interaction("u0", "b1", schemas.UserMessage, day)
		r.commit()
		records := 0
		r.finished = func(b *state.Batch) {
			for _, ch := range b.Changes() {
				if ch.Key[0] == state.CampaignChangelogKey("")[0] {
					records++
				}
			}
		}
		r.launchAt("c1", tc.biz, day.Add(time.Hour), 0)
		r.commit()
		for !r.interaction("u0", "b0", schemas.UserMessage, day.Add(2*time.Hour)) {
			r.commit()
		}
		r.commit()
		for !r.fanout() {
			r.commit()
		}
		r.commit()
		if records != tc.records {
			t.Errorf("campaign of %s: %d campaign records, want %d", tc.biz, records, tc.records)
		}
	}
}

// fairnessRun fans out cBig (20 contacts of business big) and cSmall (3
// contacts of small, or of big when sameBusiness), due at once, with 6
// decisions a transaction, and returns the chunks in order.
func fairnessRun(t *testing.T, sameBusiness bool, userCap int) []string {
	r := newPartitionRun(t, 0, 6, func(c *policy.Config) { c.UserCap = userCap })
	day := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	small := "small"
	if sameBusiness {
		small = "big"
	}
	for u := range 20 {
		r.interaction(fmt.Sprintf("u%02d", u), "big", schemas.UserMessage, day)
	}
	for u := range 3 {
		r.interaction(fmt.Sprintf("s%d", u), small, schemas.UserMessage, day)
	}
	r.commit()
	r.launchAt("cBig", "big", day.Add(time.Hour), 0)
	r.launchAt("cSmall", small, day.Add(time.Hour+time.Minute), 1)
	r.commit()
	var chunks []string
	r.out.chunks = &chunks
	for !r.interaction("u00", "big", schemas.UserMessage, day.Add(48*time.Hour)) {
		r.commit()
		r.out.chunks = &chunks
	}
	r.commit()
	r.out.chunks = &chunks
	for !r.fanout() {
		r.commit()
		r.out.chunks = &chunks
	}
	r.commit()
	return chunks
}

// TestSmallCampaignNotHeldBack: the fan-outs of two businesses share a
// transaction's budget, so the small one finishes in the first
// transaction, long before the large one.
func TestSmallCampaignNotHeldBack(t *testing.T) {
	got := fairnessRun(t, false, 0)
	want := []string{"cBig", "cSmall+", "cBig", "cBig", "cBig+"}
	if !slices.Equal(got, want) {
		t.Fatalf("chunks %v, want %v", got, want)
	}
}

// TestSameBusinessKeepsOrder: campaigns of one business fan out one after
// the other in (send_at, campaign_id) order, which rule 4 depends on.
func TestSameBusinessKeepsOrder(t *testing.T) {
	got := fairnessRun(t, true, 0)
	want := []string{"cBig", "cBig", "cBig", "cBig+", "cSmall", "cSmall", "cSmall", "cSmall", "cSmall+"}
	if !slices.Equal(got, want) {
		t.Fatalf("chunks %v, want %v", got, want)
	}
}

// TestUserCapKeepsOrder: with the per-user cap on (rule 5 counts across
// businesses), fan-outs run one at a time in firing order.
func TestUserCapKeepsOrder(t *testing.T) {
	got := fairnessRun(t, false, 3)
	want := []string{"cBig", "cBig", "cBig", "cBig+", "cSmall+"}
	if !slices.Equal(got, want) {
		t.Fatalf("chunks %v, want %v", got, want)
	}
}

// flowStep is one interaction of flowRun.
type flowStep struct {
	user, biz string
	kind      schemas.InteractionKind
	at        time.Duration // after the day's start
}

// flowRun fans out cBig (40 contacts of big, from 01:00) and cSmall (3
// contacts of small, or of big when sameBusiness, from 03:00) while the
// interactions of steps arrive, one transaction each, with budget
// decisions a transaction. It returns every decision as
// campaign/user -> reason, the chunks in order and how many interactions
// were held for the fan-outs. With a budget larger than every fan-out,
// each fan-out ends inside the transaction that starts it, before the
// interaction that started it is applied: the order in which interactions
// wait for the fan-outs, which the others must decide as.
func flowRun(t *testing.T, grace time.Duration, budget int, sameBusiness bool, userCap int, steps []flowStep) (map[string]policy.Reason, []string, int) {
	r := newPartitionRun(t, grace, budget, func(c *policy.Config) { c.UserCap = userCap })
	day := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	small := "small"
	if sameBusiness {
		small = "big"
	}
	for u := range 40 {
		r.interaction(fmt.Sprintf("u%02d", u), "big", schemas.UserMessage, day)
	}
	for u := range 3 {
		r.interaction(fmt.Sprintf("s%d", u), small, schemas.UserMessage, day)
	}
	r.commit()
	r.launchAt("cBig", "big", day.Add(time.Hour), 0)
	r.launchAt("cSmall", small, day.Add(3*time.Hour), 1)
	r.commit()
	decided := map[string]policy.Reason{}
	var chunks []string
	held := 0
	watch := func() { r.out.chunks, r.out.reasons = &chunks, decided }
	watch()
	for _, s := range steps {
		for !r.interaction(s.user, s.biz, s.kind, day.Add(s.at)) {
			if !r.part.Held() {
				t.Fatalf("%s/%s %s at %s waits, not held", s.user, s.biz, s.kind, s.at)
			}
			held++
			r.commit()
			watch()
		}
		r.commit()
		watch()
	}
	for !r.fanout() {
		r.commit()
		watch()
	}
	r.commit()
	return decided, chunks, held
}

// flowSteps move the stream time past cSmall's send time during cBig's
// fan-out, with interactions of big after cBig's fire time (a block of a
// user it has not reached, a first contact), of small before cSmall's, and
// of others.
var flowSteps = []flowStep{
	{"n0", "big", schemas.UserMessage, 65 * time.Minute}, // before the fire with a grace
	{"z", "other", schemas.UserMessage, 2 * time.Hour},
	{"u19", "big", schemas.Block, 2 * time.Hour},
	{"n1", "big", schemas.UserMessage, 2 * time.Hour},
	{"s1", "small", schemas.Block, 150 * time.Minute},
	{"z", "other", schemas.UserMessage, 4 * time.Hour},
	{"u18", "big", schemas.SponsoredOptOut, 4 * time.Hour},
	{"s2", "small", schemas.SponsoredOptOut, 4 * time.Hour},
	{"z", "other", schemas.UserMessage, 5 * time.Hour},
	{"u17", "big", schemas.UserMessage, 5 * time.Hour},
}

// TestInteractionsFlowDuringFanout: interactions that no fan-out in
// progress could count differently flow beside it, so the stream time
// passes cSmall's send time and cSmall (another business) finishes before
// cBig does; every decision is the one of the order in which interactions
// wait for the fan-outs. With cSmall of cBig's business, or the per-user
// cap on, cSmall still runs after cBig, with the same decisions too.
func TestInteractionsFlowDuringFanout(t *testing.T) {
	for _, tc := range []struct {
		name         string
		sameBusiness bool
		userCap      int
		smallFirst   bool
	}{{"other business", false, 0, true}, {"same business", true, 0, false}, {"user cap", false, 3, false}} {
		for _, grace := range []time.Duration{0, 10 * time.Minute} {
			t.Run(fmt.Sprintf("%s/grace %s", tc.name, grace), func(t *testing.T) {
				want, _, _ := flowRun(t, grace, 1000, tc.sameBusiness, tc.userCap, flowSteps)
				got, chunks, held := flowRun(t, grace, 4, tc.sameBusiness, tc.userCap, flowSteps)
				if !maps.Equal(got, want) {
					t.Errorf("decisions beside the fan-outs:\n%v\nwaiting for them:\n%v", got, want)
				}
				if held != 0 {
					t.Errorf("%d interactions held, want none", held)
				}
				small, big := slices.Index(chunks, "cSmall+"), slices.Index(chunks, "cBig+")
				if small < 0 || big < 0 || (small < big) != tc.smallFirst {
					t.Errorf("chunks %v: cSmall finished before cBig: %v, want %v", chunks, small < big, tc.smallFirst)
				}
				// The block and opt-out after cBig's fire time do not stop
				// it; the first contact after it is no candidate; the block
				// before cSmall's fire time stops cSmall.
				for pair, reason := range map[string]policy.Reason{
					"cBig/u19": policy.Delivered, "cBig/u18": policy.Delivered,
				} {
					if got[pair] != reason {
						t.Errorf("%s: %s, want %s", pair, got[pair], reason)
					}
				}
				if _, ok := got["cBig/n1"]; ok {
					t.Errorf("cBig decided about n1, whose first contact is after its fire time")
				}
				if !tc.sameBusiness && got["cSmall/s1"] != policy.Blocked {
					t.Errorf("cSmall/s1: %s, want BLOCKED", got["cSmall/s1"])
				}
			})
		}
	}
}

// TestHeldInteractionsWait: during cBig's fan-out, an erasure of a user it
// has not reached, and a late block of one (at or before its fire time),
// are held until the fan-out ends; a late block of a user it has passed,
// and an interaction of another business at the same time, are not. The
// decisions are those of the waiting order: the three users are delivered.
func TestHeldInteractionsWait(t *testing.T) {
	steps := []flowStep{
		{"z", "other", schemas.UserMessage, 2 * time.Hour},
		{"u01", "big", schemas.Block, 30 * time.Minute}, // behind the cursor: flows
		{"u15", "", schemas.UserErased, 2 * time.Hour},
		{"u16", "big", schemas.Block, 30 * time.Minute},
		{"s0", "small", schemas.Block, 30 * time.Minute},
		{"z", "other", schemas.UserMessage, 4 * time.Hour},
	}
	for _, grace := range []time.Duration{0, 10 * time.Minute} {
		want, _, _ := flowRun(t, grace, 1000, false, 0, steps)
		got, _, held := flowRun(t, grace, 4, false, 0, steps)
		if !maps.Equal(got, want) {
			t.Errorf("grace %s: decisions beside the fan-outs:\n%v\nwaiting for them:\n%v", grace, got, want)
		}
		if held == 0 {
			t.Errorf("grace %s: no interaction held", grace)
		}
		for _, pair := range []string{"cBig/u15", "cBig/u16", "cBig/u01"} {
			if got[pair] != policy.Delivered {
				t.Errorf("grace %s: %s: %s, want DELIVERED (the erasure and the late block come after the fan-out)", grace, pair, got[pair])
			}
		}
		if got["cSmall/s0"] != policy.Blocked {
			t.Errorf("grace %s: cSmall/s0: %s, want BLOCKED", grace, got["cSmall/s0"])
		}
	}
}

// TestHoldsOnlyWhatAFanoutCouldCount: the rule both ways, with cBig firing
// as of 01:00: held are an erasure and an interaction of big at or before
// 01:00 of a user cBig has not decided about yet; not held, one of big
// after it, one at or before it of a user cBig has passed, one of another
// business at any time, and a business message.
func TestHoldsOnlyWhatAFanoutCouldCount(t *testing.T) {
	day := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		step flowStep
		held bool
	}{
		{flowStep{"u10", "", schemas.UserErased, 2 * time.Hour}, true},
		{flowStep{"u10", "big", schemas.UserMessage, time.Hour}, true},
		{flowStep{"u10", "big", schemas.Unblock, 30 * time.Minute}, true},
		{flowStep{"u10", "big", schemas.UserMessage, time.Hour + time.Millisecond}, false},
		// u01 is behind cBig's cursor (its first chunk went over u00-u03).
		{flowStep{"u01", "big", schemas.Block, 30 * time.Minute}, false},
		{flowStep{"u01", "", schemas.UserErased, 2 * time.Hour}, true},
		{flowStep{"u10", "small", schemas.Block, 30 * time.Minute}, false},
		{flowStep{"u10", "big", schemas.BusinessMessage, 30 * time.Minute}, false},
	} {
		r := newPartitionRun(t, 0, 4, nil)
		for u := range 20 {
			r.interaction(fmt.Sprintf("u%02d", u), "big", schemas.UserMessage, day)
		}
		r.commit()
		r.launchAt("cBig", "big", day.Add(time.Hour), 0)
		r.commit()
		r.interaction("z", "other", schemas.UserMessage, day.Add(2*time.Hour))
		r.commit()
		s := tc.step
		applied := r.interaction(s.user, s.biz, s.kind, day.Add(s.at))
		if applied == tc.held || r.part.Held() != tc.held {
			t.Errorf("%s/%s %s at %s: applied %v, held %v; want held %v", s.user, s.biz, s.kind, s.at, applied, r.part.Held(), tc.held)
		}
	}
}
