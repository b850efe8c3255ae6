package pipeline

import (
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sponsored/sponsor/policy"
	"github.com/sponsored/sponsor/schemas"
	"github.com/sponsored/sponsor/topics"
)

// graceEnv is testEnv with one partition, the given grace and chunk, and
// the rules changed by cfgf.
func graceEnv(t *testing.T, grace time.Duration, chunk int, cfgf func(*policy.Config)) *env {
	e := testEnv(t, 1, topics.Murmur2)
	cfg := policy.DefaultConfig()
	cfg.Grace = grace
	if cfgf != nil {
		cfgf(&cfg)
	}
	pol, err := policy.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	e.policy = pol
	e.chunk = chunk
	return e
}

// next commits the task's transaction and begins the next one; it returns
// the inbox records of the transaction.
func next(t *testing.T, tk *task, off *int64) []*kgo.Record {
	t.Helper()
	if err := tk.expire(sweepPerTxn); err != nil {
		t.Fatal(err)
	}
	if err := tk.finish(); err != nil {
		t.Fatal(err)
	}
	var inbox []*kgo.Record
	for _, r := range tk.out {
		if r.Topic == tk.env.names.Inbox {
			inbox = append(inbox, &kgo.Record{Key: append([]byte(nil), r.Key...)})
		}
	}
	*off++
	if err := tk.batch.Commit(*off); err != nil {
		t.Fatal(err)
	}
	tk.batch = nil
	tk.begin(tk.wall)
	return inbox
}

func launch(id, biz string, send time.Time) *schemas.Campaign {
	return &schemas.Campaign{CampaignID: id, BusinessID: biz, Action: schemas.Launch, SendAt: send, ExpiresAt: send.Add(48 * time.Hour), Message: schemas.Message{Text: "hi " + id}}
}

func admit(t *testing.T, tk *task, c *schemas.Campaign) {
	t.Helper()
	if err := tk.applyCampaign(campaignRec(t, tk.env, c)); err != nil {
		t.Fatal(err)
	}
}

// campaignRec returns the record of campaign c, keyed by its id.
func campaignRec(t testing.TB, e *env, c *schemas.Campaign) *kgo.Record {
	t.Helper()
	v, err := e.serde.AppendCampaign(nil, c)
	if err != nil {
		t.Fatal(err)
	}
	return &kgo.Record{Topic: e.names.Campaigns, Key: []byte(c.CampaignID), Value: v}
}

func run(t *testing.T, tk *task, recs []*kgo.Record, off *int64) int {
	t.Helper()
	for _, r := range recs {
		r.Offset = *off
		*off++
	}
	n, err := tk.process(recs)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// lateLaunchBehindStarted plays the scenario of the two tests below and
// returns how many inbox records user u gets from business B. Business A
// has three contacts, B one (u); with a chunk of 2, cA (01:00) and cB
// (02:00) start at once on an interaction at 05:00, and cA's first chunk
// uses the budget, so cB has not run a chunk yet when a late LAUNCH of B,
// cLate (send 00:30), is read in the next transaction (after a restart,
// when restart is set).
func lateLaunchBehindStarted(t *testing.T, grace time.Duration, restart bool) int {
	t.Helper()
	e := graceEnv(t, grace, 2, nil)
	tk := newTestTask(t, e, 0)
	var in, cl int64
	t0 := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)
	run(t, tk, []*kgo.Record{
		interaction(t, e, "a1", "A", schemas.UserMessage, t0, 0),
		interaction(t, e, "a2", "A", schemas.UserMessage, t0, 0),
		interaction(t, e, "a3", "A", schemas.UserMessage, t0, 0),
		interaction(t, e, "u", "B", schemas.UserMessage, t0, 0),
	}, &in)
	admit(t, tk, launch("cA", "A", t0.Add(1*time.Hour)))
	admit(t, tk, launch("cB", "B", t0.Add(2*time.Hour)))
	inbox := next(t, tk, &cl)
	x := []*kgo.Record{interaction(t, e, "x", "Z", schemas.UserMessage, t0.Add(5*time.Hour), 0)}
	if n := run(t, tk, x, &in); n != 0 {
		t.Fatalf("processed %d, want the interaction to wait for the fan-outs", n)
	}
	in = x[0].Offset
	inbox = append(inbox, next(t, tk, &cl)...)
	if restart {
		tk.batch.Close()
		if err := tk.load(); err != nil {
			t.Fatal(err)
		}
	}
	e.chunk = 100
	tk.begin(tk.wall)
	admit(t, tk, launch("cLate", "B", t0.Add(30*time.Minute)))
	run(t, tk, x, &in)
	inbox = append(inbox, next(t, tk, &cl)...)
	n := 0
	for _, r := range inbox {
		if string(r.Key) == "u" {
			n++
		}
	}
	return n
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

// TestLateLaunchAfterRestart: the same with the instance restarting (load)
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
			e := graceEnv(t, grace, 100, nil)
			tk := newTestTask(t, e, 0)
			var in, cl int64
			t0 := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)
			run(t, tk, []*kgo.Record{
				interaction(t, e, "u", "b1", schemas.UserMessage, t0, 0),
				interaction(t, e, "u", "", schemas.UserErased, t0.Add(time.Hour), 0),
				interaction(t, e, "u", "b1", schemas.UserMessage, t0.Add(2*time.Hour), 0),
				// the stream goes on past the grace
				interaction(t, e, "x", "Z", schemas.UserMessage, t0.Add(3*time.Hour), 0),
				interaction(t, e, "u", "b1", schemas.BotStarted, t0.Add(3*time.Hour), 0), // folds the 2h message
			}, &in)
			next(t, tk, &cl)
			c, known, _ := tk.batch.Contact("u", "b1")
			t.Logf("before the duplicate: known %v, contact %+v", known, c)
			run(t, tk, []*kgo.Record{interaction(t, e, "u", "", schemas.UserErased, t0.Add(time.Hour), 0)}, &in)
			next(t, tk, &cl)
			c, known, _ = tk.batch.Contact("u", "b1")
			t.Logf("after the duplicate: known %v, contact %+v", known, c)
			if !known || c.LastContact() == 0 {
				t.Errorf("after a duplicate of the erasure at t0+1h, the contact made at t0+2h and t0+3h is gone: known %v, %+v", known, c)
			}
			admit(t, tk, launch("c1", "b1", t0.Add(4*time.Hour)))
			run(t, tk, []*kgo.Record{interaction(t, e, "x", "Z", schemas.UserMessage, t0.Add(5*time.Hour), 0)}, &in)
			inbox := next(t, tk, &cl)
			if len(inbox) != 1 {
				t.Errorf("%d deliveries to u, want 1 (contact after the erasure)", len(inbox))
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
	e := graceEnv(t, 0, 100, func(c *policy.Config) { c.ContactRetention = 48 * time.Hour })
	tk := newTestTask(t, e, 0)
	var in, cl int64
	t0 := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)
	t1 := t0.Add(time.Hour) // the erasure
	run(t, tk, []*kgo.Record{
		interaction(t, e, "u", "b1", schemas.UserMessage, t0, 0),
		interaction(t, e, "u", "", schemas.UserErased, t1, 0),
		interaction(t, e, "u", "b1", schemas.UserMessage, t1.Add(time.Hour), 0),
	}, &in)
	next(t, tk, &cl)
	// The user keeps talking to b1 for days; the stream moves on.
	for d := 1; d <= 4; d++ {
		run(t, tk, []*kgo.Record{interaction(t, e, "u", "b1", schemas.UserMessage, t1.Add(time.Duration(d)*24*time.Hour), 0)}, &in)
		next(t, tk, &cl)
		next(t, tk, &cl)
	}
	if _, ok, _ := tk.batch.Erasure("u"); !ok {
		t.Fatalf("the marker is gone while u has a contact made after the erasure")
	}
	// A very late BLOCK from before the erasure, and a late first contact
	// with b2 from before the erasure.
	run(t, tk, []*kgo.Record{
		interaction(t, e, "u", "b1", schemas.Block, t1.Add(-30*time.Minute), 0),
		interaction(t, e, "u", "b2", schemas.UserMessage, t1.Add(-20*time.Minute), 0),
	}, &in)
	if c, ok, _ := tk.batch.Contact("u", "b2"); ok {
		t.Errorf("an interaction from before the erasure is stored: u/b2 %+v", c)
	}
	if c, _, _ := tk.batch.Contact("u", "b1"); c.Blocked {
		t.Errorf("a BLOCK from before the erasure suppresses the contact made after it: %+v", c)
	}
	for _, ch := range tk.batch.Changes() {
		if len(ch.Key) > 0 && ch.Key[0] == 'c' {
			t.Errorf("changelog record for an interaction from before the erasure: %q", ch.Key)
		}
	}
}

// TestWallClockGraceBoundary: a campaign fired by the wall clock raises the
// stream time past send_at + grace, so a first contact exactly at send_at
// read afterwards, which the campaign could not count, is counted late.
func TestWallClockGraceBoundary(t *testing.T) {
	e := graceEnv(t, 10*time.Minute, 100, nil)
	tk := newTestTask(t, e, 0)
	var in, cl int64
	s := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	admit(t, tk, launch("c1", "b1", s))
	if err := tk.fireByWallClock(policy.ToMillis(s.Add(10*time.Minute + time.Millisecond))); err != nil {
		t.Fatal(err)
	}
	next(t, tk, &cl)
	t.Logf("stream time %s, watermark %s", fmtMillis(tk.part.Time()), fmtMillis(tk.watermark()))
	run(t, tk, []*kgo.Record{interaction(t, e, "u", "b1", schemas.UserMessage, s, 0)}, &in)
	if tk.counts.late[schemas.UserMessage] == 0 {
		t.Errorf("the interaction at send_at, read after c1 fired without it, is not counted late")
	}
	if st := tk.part.Campaign("c1").Status; st != policy.Fired {
		t.Fatalf("c1 %s", st)
	}
}

// TestRetentionGapInGrace: the story testdata/grace-retention on the task
// (grace 1h, retention 2d): a block forgotten with its contact before an
// interaction the grace holds apart stays forgotten, in both arrival
// orders.
func TestRetentionGapInGrace(t *testing.T) {
	for _, order := range []string{"sorted", "u2-first"} {
		t.Run(order, func(t *testing.T) {
			e := graceEnv(t, time.Hour, 100, func(c *policy.Config) { c.ContactRetention = 48 * time.Hour })
			tk := newTestTask(t, e, 0)
			var in, cl int64
			t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
			run(t, tk, []*kgo.Record{
				interaction(t, e, "u1", "b1", schemas.UserMessage, t0, 0),
				interaction(t, e, "u1", "b1", schemas.Block, t0, 0),
			}, &in)
			admit(t, tk, launch("c1", "b1", t0.Add(49*time.Hour)))
			um := interaction(t, e, "u1", "b1", schemas.UserMessage, t0.Add(48*time.Hour+30*time.Minute), 0)
			x := interaction(t, e, "u2", "b2", schemas.UserMessage, t0.Add(49*time.Hour+10*time.Minute), 0)
			recs := []*kgo.Record{um, x}
			if order != "sorted" {
				recs = []*kgo.Record{x, um}
			}
			run(t, tk, recs, &in)
			next(t, tk, &cl)
			run(t, tk, []*kgo.Record{interaction(t, e, "u3", "b3", schemas.UserMessage, t0.Add(50*time.Hour+time.Minute), 0)}, &in)
			inbox := next(t, tk, &cl)
			if len(inbox) != 1 {
				t.Errorf("%s: %d deliveries to u1; the rules: 1 (the block of Jan 1 is forgotten on Jan 3 00:00, a new contact at 00:30)", order, len(inbox))
			}
		})
	}
}

// TestNoRecordTimestamp: a record without a timestamp (Kafka's
// NO_TIMESTAMP, -1, from a producer of the message format before 0.10) is
// judged by the wall clock alone, not dead-lettered for its clock.
func TestNoRecordTimestamp(t *testing.T) {
	e := testEnv(t, 1, topics.Murmur2)
	e.skew = (5 * time.Minute).Milliseconds()
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	tk := &task{env: e, wall: policy.ToMillis(now)}
	r := interaction(t, e, "u1", "b1", schemas.UserMessage, now.Add(-time.Hour), 0)
	r.Timestamp = time.UnixMilli(-1)
	_, reason, err := tk.decode(r)
	if err != nil {
		t.Fatal(err)
	}
	if reason != "" {
		t.Errorf("an hour-old interaction without a record timestamp: dead letter %q", reason)
	}
}
