package pipeline

import (
	"cmp"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sponsored/sponsor/deadletter"
	"github.com/sponsored/sponsor/policy"
	"github.com/sponsored/sponsor/schemas"
	"github.com/sponsored/sponsor/schemas/wire"
	"github.com/sponsored/sponsor/state"
	"github.com/sponsored/sponsor/topics"
)

// task owns the users of one interactions partition: their state, the
// partition's view of every campaign, and the outputs for those users. Its
// methods run on one goroutine at a time: the runner's loop, or a goroutine
// of the loop's own for the task's part of a transaction (eachTask), while
// the loop waits.
type task struct {
	p      int32
	env    *env
	meta   state.Meta
	camps  map[string]*policy.Progress // every campaign the task remembers
	queue  []*policy.Progress          // Pending, in policy.Compare order
	firing []*policy.Progress          // Firing, in the order they fire
	sweep  []byte                      // contact expiry sweep cursor (in memory only)
	sweepR []byte                      // recipient expiry sweep cursor
	sweepE []byte                      // erasure-marker expiry sweep cursor
	// fanning tallies the fan-outs in progress for the metrics, as of the
	// last committed transaction (in memory only: a fan-out resumed by
	// another instance or after a restart is tallied from there).
	fanning map[string]*fanoutTally

	// last is the task's last committed batch, which Pebble may still be
	// applying (state.Batch.Apply): the next batch follows it.
	last *state.Batch

	// Per transaction.
	batch       *state.Batch
	out         []*kgo.Record
	counts      counts
	metaChanged bool
	fired       []string // campaigns whose fan-out finished, for the log and the metrics
	budget      int      // decisions left in this transaction
	decodeBuf   []byte
	wall        policy.Millis // the wall clock as the transaction began

	// The records of a transaction and the bytes of the keys and values
	// the task encodes for them, reused from one transaction to the next:
	// franz-go is done with every record once the transaction has ended
	// (the loop waits for every record's promise, and stops the instance
	// if some never come: see txnOutputs). A fan-out
	// of 5000 decisions otherwise allocated a record, a key and an
	// encoding buffer per inbox and decision record.
	slab  []kgo.Record
	arena []byte

	// contacts is the partition's contact filter, built once the task's
	// state is restored (a task is handed over only with one).
	contacts *state.ContactFilter
}

// fanoutTally is a fan-out in progress: when the task started it and how
// many candidates its committed chunks decided about.
type fanoutTally struct {
	start                 time.Time
	candidates, delivered int64
	// contacts is the business's contacts on the partition when the
	// fan-out started (from its cursor, when resumed), -1 until its first
	// chunk; visited, those the committed chunks went over (candidates or
	// not).
	contacts, visited int64
	business          string
}

// finishedFanout is a campaign's fan-out that a task finished in a
// committed transaction: its partition's totals.
type finishedFanout struct {
	campaign              string
	partition             int32
	candidates, delivered int64
	start                 time.Time
}

// env is what tasks share: read-only after start.
type env struct {
	names    topics.Names
	policy   *policy.Policy
	serde    *wire.Serde
	store    *state.Store
	chunk    int
	campaign *broadcast
	unsafe   bool          // Config.UnsafeNoTransactions
	skew     policy.Millis // Config.MaxClockSkew
	// partitions and partitioner say where each interaction belongs: the
	// interactions topic's partition count and Config.Partitioner.
	partitions  int32
	partitioner topics.Partitioner
}

// load (re)reads the task's in-memory view from the store, dropping anything
// staged: used after a restore and after an aborted transaction.
func (t *task) load() error {
	if t.batch != nil {
		t.batch.Close()
		t.batch = nil
	}
	meta, cs, err := t.env.store.LoadTask(t.p) // after the last batch's apply
	if err != nil {
		return err
	}
	t.last = nil
	t.meta = meta
	// The sweeps start their rounds over: an aborted transaction's sweep
	// deleted nothing, and a round must visit every key (Erasure).
	t.sweep, t.sweepR, t.sweepE = nil, nil, nil
	t.camps = make(map[string]*policy.Progress, len(cs))
	t.queue, t.firing = t.queue[:0], t.firing[:0]
	for i := range cs {
		c := &cs[i]
		t.camps[c.Campaign.ID] = c
		switch c.Status {
		case policy.Pending:
			t.queue = append(t.queue, c)
		case policy.Firing:
			t.firing = append(t.firing, c)
		}
	}
	slices.SortFunc(t.queue, policy.Compare)
	// Fan-outs resume in the order they run (startFiring): the one in
	// progress (it has a cursor; there is at most one) first, then by fire
	// time and policy.Compare.
	slices.SortFunc(t.firing, func(a, b *policy.Progress) int {
		if (a.Cursor != "") != (b.Cursor != "") {
			if a.Cursor != "" {
				return -1
			}
			return 1
		}
		return firingOrder(a, b)
	})
	return nil
}

// begin starts the task's part of a transaction.
func (t *task) begin() {
	t.batch = t.env.store.NewBatch(t.p)
	if t.last != nil {
		t.batch.Follow(t.last)
	}
	if t.contacts != nil {
		t.batch.UseFilter(t.contacts)
	}
	t.out = t.out[:0]
	t.slab, t.arena = t.slab[:0], t.arena[:0]
	t.counts = counts{}
	t.metaChanged = false
	t.fired = t.fired[:0]
	t.budget = t.env.chunk
}

// syncCampaigns applies the campaign records the task has not seen, up to
// ends (exclusive) per campaigns partition. Task 0 dead-letters bad campaign
// records, so each is dead-lettered once, in a transaction.
func (t *task) syncCampaigns(ends map[int32]int64, nparts int) error {
	for len(t.meta.Campaigns) < nparts {
		t.meta.Campaigns = append(t.meta.Campaigns, 0)
	}
	for q := int32(0); q < int32(nparts); q++ {
		from, end := t.meta.Campaigns[q], ends[q]
		if from >= end {
			continue
		}
		for _, cr := range t.env.campaign.since(q, from, end) {
			if err := t.applyCampaign(cr); err != nil {
				return err
			}
			t.meta.Campaigns[q] = cr.rec.Offset + 1
		}
		t.meta.Campaigns[q] = end
		t.metaChanged = true
	}
	return nil
}

func (t *task) applyCampaign(cr campaignRecord) error {
	if cr.control {
		return nil
	}
	c := cr.campaign
	if c == nil {
		if cr.reason == reasonRetry {
			dc, err := t.env.serde.DecodeCampaign(cr.rec.Value)
			if err != nil {
				var de *wire.DecodeError
				if !errors.As(err, &de) {
					return fmt.Errorf("decode campaign at %s/%d@%d: %w", cr.rec.Topic, cr.rec.Partition, cr.rec.Offset, err)
				}
				cr.reason, cr.err = de.Reason, err
			} else {
				c = &dc
			}
		}
		if c == nil {
			t.deadLetterCampaign(cr.rec, cr.reason, cr.err)
			return nil
		}
	}
	t.counts.campaignsSeen++
	known := t.camps[c.CampaignID]
	next, verdict := policy.Admit(known, c, t.env.policy.LateAsOf(t.watermark()))
	switch verdict {
	case policy.Invalid:
		t.deadLetterCampaign(cr.rec, deadletter.ReasonCampaignExpiresBeforeSend,
			fmt.Errorf("campaign %s expires at %s, before its send_at %s", c.CampaignID, c.ExpiresAt.UTC().Format("2006-01-02T15:04:05.000Z"), c.SendAt.UTC().Format("2006-01-02T15:04:05.000Z")))
		return nil
	case policy.Ignored:
		return nil
	case policy.CancelledPending:
		t.queue = slices.DeleteFunc(t.queue, func(p *policy.Progress) bool { return p == known })
	}
	t.camps[c.CampaignID] = next
	if next.Status == policy.Pending {
		i, _ := slices.BinarySearchFunc(t.queue, next, policy.Compare)
		t.queue = slices.Insert(t.queue, i, next)
	} else if next.Status == policy.Firing {
		t.startFiring(next)
	}
	return t.batch.PutCampaign(next)
}

func (t *task) deadLetterCampaign(r *kgo.Record, reason deadletter.Reason, err error) {
	if t.p != 0 {
		return
	}
	t.out = append(t.out, deadletter.New(t.env.names.DeadLetter, r, reason, err))
	t.counts.deadLetter(reason)
}

// fanout continues the fan-outs in progress within the transaction's
// decision budget. It reports whether every fan-out finished.
func (t *task) fanout() (bool, error) {
	for len(t.firing) > 0 {
		if t.budget <= 0 {
			return false, nil
		}
		c := t.firing[0]
		if t.fanning[c.Campaign.ID] == nil {
			if t.fanning == nil {
				t.fanning = map[string]*fanoutTally{}
			}
			t.fanning[c.Campaign.ID] = &fanoutTally{start: time.Now(), contacts: -1, business: c.Campaign.Business}
		}
		var candidates, visited, delivered int64
		var rec policy.Recipient
		cfg := t.env.policy.Config()
		var enc *encoders // made for the chunk's first record: most chunks of small campaigns have none
		last, done, err := t.batch.Audience(c.Campaign.Business, c.Cursor, t.budget, func(user string, contact *policy.Contact, known bool) error {
			t.budget--
			visited++
			if asOf := t.env.policy.AsOf(contact, c.FireAt); t.env.policy.ContactExpired(&asOf, c.FireAt) {
				// Forgotten as of the send time, whether or not a sweep
				// has deleted it yet: not a candidate, as if swept, so
				// that the decisions (and their NO_CONTACT records) do
				// not depend on when sweeps happened to run.
				return nil
			}
			var r *policy.Recipient
			if cfg.UserCap > 0 {
				var err error
				rec, _, err = t.batch.Recipient(user)
				if err != nil {
					return err
				}
				r = &rec
			}
			reason := t.env.policy.Decide(contact, r, &c.Campaign, c.FireAt)
			t.counts.decisions[reason]++
			candidates++
			if reason == policy.Delivered {
				delivered++
			}
			if t.env.names.Decisions == "" && reason != policy.Delivered {
				return nil
			}
			if enc == nil {
				var err error
				if enc, err = t.templates(c); err != nil {
					return err
				}
			}
			// One delivery id and one copy of the key for the decision
			// and the inbox record.
			id, key := policy.DeliveryID(c.Campaign.ID, user), t.key(user)
			if enc.decision != nil {
				t.decided(enc.decision, key, id, user, reason)
			}
			if reason != policy.Delivered {
				return nil
			}
			if err := t.batch.PutContact(user, c.Campaign.Business, contact, known); err != nil {
				return err
			}
			if r != nil {
				if err := t.batch.PutRecipient(user, r); err != nil {
					return err
				}
			}
			t.deliver(enc.inbox, key, id, user)
			return nil
		})
		if err != nil {
			return false, fmt.Errorf("fan out campaign %s on partition %d: %w", c.Campaign.ID, t.p, err)
		}
		c.Cursor = last
		if t.counts.candidates == nil {
			t.counts.candidates = map[string]int64{}
		}
		t.counts.candidates[c.Campaign.ID] += candidates
		if t.counts.visited == nil {
			t.counts.visited, t.counts.delivered = map[string]int64{}, map[string]int64{}
		}
		t.counts.visited[c.Campaign.ID] += visited
		t.counts.delivered[c.Campaign.ID] += delivered
		if f := t.fanning[c.Campaign.ID]; f.contacts < 0 {
			// How far the fan-out has to go, for its progress
			// (sponsor_fanout_contacts): known after its first chunk. Only
			// a fan-out longer than a chunk counts the rest, one scan of
			// the keys after the cursor; most campaigns, a few hundred
			// contacts, pay nothing. (Counting every fan-out up front cost
			// 3-8% of the CPU per delivery of a 300k fan-out.) A fan-out
			// resumed after a restart counts from its cursor on.
			f.contacts = visited
			if !done {
				rest, err := t.batch.CountContacts(c.Campaign.Business, last)
				if err != nil {
					return false, fmt.Errorf("count the contacts of %s on partition %d: %w", c.Campaign.Business, t.p, err)
				}
				f.contacts += rest
			}
		}
		if done {
			c.Status, c.Cursor = policy.Fired, ""
			t.firing = t.firing[1:]
			t.counts.campaignsFired++
			t.fired = append(t.fired, c.Campaign.ID)
		}
		if err := t.batch.PutCampaign(c); err != nil {
			return false, err
		}
		t.raiseTime(c.FireAt)
	}
	return true, nil
}

// committed adds the counts of the task's part of a transaction to s once
// the transaction committed, records the fan-outs it finished and returns
// them.
func (t *task) committed(s *Stats) []finishedFanout {
	for id, n := range t.counts.candidates {
		if f := t.fanning[id]; f != nil {
			f.candidates += n
			f.delivered += t.counts.delivered[id]
		}
	}
	for id, n := range t.counts.visited {
		if f := t.fanning[id]; f != nil {
			f.visited += n
		}
	}
	var done []finishedFanout
	for _, id := range t.fired {
		ff := finishedFanout{campaign: id, partition: t.p, start: time.Now()}
		if f := t.fanning[id]; f != nil {
			s.observeFanout(f.candidates, time.Since(f.start))
			ff.candidates, ff.delivered, ff.start = f.candidates, f.delivered, f.start
			delete(t.fanning, id)
		}
		done = append(done, ff)
	}
	s.add(&t.counts)
	return done
}

// key returns a copy of user in the task's arena, for record keys.
func (t *task) key(user string) []byte {
	start := len(t.arena)
	t.arena = append(t.arena, user...)
	return t.arena[start:len(t.arena):len(t.arena)]
}

// encoders are the templates of a campaign's records, encoded once per chunk
// of its fan-out rather than once per candidate.
type encoders struct {
	inbox    *wire.InboxTemplate
	decision *wire.DecisionTemplate // nil without a decisions topic
}

// templates returns the encoders of campaign c's records.
func (t *task) templates(c *policy.Progress) (*encoders, error) {
	enc := &encoders{}
	var err error
	enc.inbox, err = t.env.serde.InboxTemplate(&schemas.InboxMessage{
		BusinessID: c.Campaign.Business,
		CampaignID: c.Campaign.ID,
		SentAt:     millisTime(c.FireAt),
		Message:    c.Message,
	})
	if err != nil {
		return nil, fmt.Errorf("encode inbox message: %w", err)
	}
	if t.env.names.Decisions != "" {
		enc.decision, err = t.env.serde.DecisionTemplate(&schemas.Decision{
			BusinessID:  c.Campaign.Business,
			CampaignID:  c.Campaign.ID,
			DecidedAsOf: millisTime(c.FireAt),
		})
		if err != nil {
			return nil, fmt.Errorf("encode decision: %w", err)
		}
	}
	return enc, nil
}

// decided writes the audit record of one decision to the decisions topic.
func (t *task) decided(tpl *wire.DecisionTemplate, key []byte, id, user string, reason policy.Reason) {
	start := len(t.arena)
	t.arena = tpl.Append(t.arena, id, user, schemas.Outcome(reason)) // the same order: TestOutcomesFollowReasons
	t.emit(t.env.names.Decisions, key, t.arena[start:len(t.arena):len(t.arena)])
}

// deliver adds the inbox record for user to the transaction.
func (t *task) deliver(tpl *wire.InboxTemplate, key []byte, id, user string) {
	start := len(t.arena)
	t.arena = tpl.Append(t.arena, id, user)
	t.emit(t.env.names.Inbox, key, t.arena[start:len(t.arena):len(t.arena)])
}

// emit adds a record of the task's partition of topic to the transaction,
// from the task's slab. key and value must stay untouched until the
// transaction ends (they are in the task's arena, or the batch's).
func (t *task) emit(topic string, key, value []byte) {
	if len(t.slab) == cap(t.slab) {
		// A new slab: the records already handed out keep the old one
		// alive until the next transaction drops them.
		t.slab = make([]kgo.Record, 0, max(256, 2*cap(t.slab)))
	}
	t.slab = t.slab[:len(t.slab)+1]
	r := &t.slab[len(t.slab)-1]
	*r = kgo.Record{Topic: topic, Partition: t.p, Key: key, Value: value}
	t.out = append(t.out, r)
}

// startDue moves the pending campaigns that due reports true for to the
// firing list, in order.
func (t *task) startDue(due func(*policy.Progress) bool) {
	for len(t.queue) > 0 && due(t.queue[0]) {
		c := t.queue[0]
		t.queue = t.queue[1:]
		policy.Start(c)
		t.startFiring(c)
	}
}

// startFiring adds campaign c, just started, to the fan-outs in the order
// they run: by fire time, then policy.Compare (the order load restores),
// behind the fan-out in progress if one has begun. It raises the stream
// time to what the fire time requires (policy.Policy.AfterFire), so that a
// LAUNCH that arrives late from now on fires as of no earlier time.
func (t *task) startFiring(c *policy.Progress) {
	lo := 0
	if len(t.firing) > 0 && t.firing[0].Cursor != "" {
		lo = 1
	}
	i := lo
	for i < len(t.firing) && firingOrder(t.firing[i], c) <= 0 {
		i++
	}
	t.firing = slices.Insert(t.firing, i, c)
	t.raiseTime(c.FireAt)
}

// firingOrder orders fan-outs: by fire time, then policy.Compare.
func firingOrder(a, b *policy.Progress) int {
	if a.FireAt != b.FireAt {
		return cmp.Compare(a.FireAt, b.FireAt)
	}
	return policy.Compare(a, b)
}

// raiseTime raises the task's stream time to what a campaign firing as of
// at requires (policy.Policy.AfterFire).
func (t *task) raiseTime(at policy.Millis) {
	if at = t.env.policy.AfterFire(at); at > t.meta.Time {
		t.meta.Time = at
		t.metaChanged = true
	}
}

// process applies the task's records in order. It stops early, returning the
// index of the first record it did not process, when a fan-out runs out of
// budget: the rest waits for the next transaction (event-time order is kept).
func (t *task) process(recs []*kgo.Record) (int, error) {
	if ok, err := t.fanout(); err != nil || !ok {
		return 0, err
	}
	for i, r := range recs {
		if r.Offset < t.meta.Input && !t.env.unsafe {
			continue // already applied: an offset reset or a re-fetch
		}
		if r.Attrs.IsControl() {
			t.meta.Input, t.metaChanged = r.Offset+1, true
			continue
		}
		in, reason, err := t.decode(r)
		if err != nil {
			return i, err // infrastructure: the transaction aborts
		}
		if reason != "" {
			t.meta.Input, t.metaChanged = r.Offset+1, true
			continue
		}
		at := policy.ToMillis(in.OccurredAt)
		w := t.env.policy.Watermark(at)
		t.startDue(func(c *policy.Progress) bool { return policy.DueByStreamTime(c, w) })
		if ok, err := t.fanout(); err != nil || !ok {
			return i, err
		}
		if err := t.apply(&in, at); err != nil {
			return i, err
		}
		if at > t.meta.Time {
			t.meta.Time = at
		}
		t.meta.Input, t.metaChanged = r.Offset+1, true
		t.counts.interactions++
	}
	return len(recs), nil
}

// decode returns the interaction of r, or the dead-letter reason when r is
// bad (the dead letter is already queued), or an error when the failure is
// not the record's (the registry). A good interaction on a partition other
// than the one its key maps to is bad too: task p owns the users of
// partition p, and another task's state for one of them would count a
// contact twice or miss an opt-out.
func (t *task) decode(r *kgo.Record) (schemas.Interaction, deadletter.Reason, error) {
	in, reason, err := t.decodeValue(r)
	if err != nil || reason != "" {
		return in, reason, err
	}
	if want := t.env.partitioner.Partition(r.Key, t.env.partitions); want != r.Partition {
		t.wrongPartition(r, want)
		return in, deadletter.ReasonWrongPartition, nil
	}
	return in, "", nil
}

// wrongPartition dead-letters r, which belongs on partition want.
func (t *task) wrongPartition(r *kgo.Record, want int32) {
	t.out = append(t.out, deadletter.NewWrongPartition(t.env.names.DeadLetter, r, want, fmt.Errorf(
		"record key %q maps to partition %d of %s under the %s partitioner, but the record is on partition %d: its producer must use the %s partitioner",
		r.Key, want, r.Topic, t.env.partitioner, r.Partition, t.env.partitioner)))
	t.counts.deadLetter(deadletter.ReasonWrongPartition)
}

// decodeValue is decode without the partition check: the value's own
// checks, and the key against the user.
func (t *task) decodeValue(r *kgo.Record) (schemas.Interaction, deadletter.Reason, error) {
	in, err := t.env.serde.DecodeInteraction(r.Value)
	reject := func(reason deadletter.Reason, err error) (schemas.Interaction, deadletter.Reason, error) {
		t.out = append(t.out, deadletter.New(t.env.names.DeadLetter, r, reason, err))
		t.counts.deadLetter(reason)
		return in, reason, nil
	}
	if err != nil {
		var de *wire.DecodeError
		if errors.As(err, &de) {
			return reject(de.Reason, fmt.Errorf("decode interaction at %s/%d@%d: %w", r.Topic, r.Partition, r.Offset, err))
		}
		return in, "", fmt.Errorf("decode interaction at %s/%d@%d: %w", r.Topic, r.Partition, r.Offset, err)
	}
	switch {
	case in.UserID == "":
		return reject(deadletter.ReasonEmptyUserID, errors.New("user_id is empty"))
	case string(r.Key) != in.UserID:
		return reject(deadletter.ReasonMisroutedKey, fmt.Errorf("record key %q is not the user_id %q: interactions must be keyed by their user, so that the partitioner places all of a user's records on one partition", r.Key, in.UserID))
	case in.Kind != schemas.UserErased && in.BusinessID == "":
		return reject(deadletter.ReasonEmptyBusinessID, fmt.Errorf("business_id is empty for a %s interaction", in.Kind))
	}
	if t.env.skew > 0 {
		// A wrong clock must not move the partition's time: that would
		// fire every campaign due up to it before the interactions that
		// precede it in event time are read.
		at, stamp := policy.ToMillis(in.OccurredAt), r.Timestamp.UnixMilli()
		// A record without a timestamp (-1: a producer of the message
		// format before 0.10) is judged by the wall clock alone.
		if stamp > 0 && at > stamp+t.env.skew || at > t.wall+t.env.skew {
			return reject(deadletter.ReasonClockSkew, fmt.Errorf("occurred_at %s is more than %s ahead of the record's timestamp %s or of the wall clock %s: the producing clock is wrong, or the event is from the future",
				fmtMillis(at), time.Duration(t.env.skew)*time.Millisecond, fmtMillis(stamp), fmtMillis(t.wall)))
		}
	}
	return in, "", nil
}

// watermark is the task time every rule is judged as of: the stream time
// minus the grace (policy.Policy.Watermark).
func (t *task) watermark() policy.Millis { return t.env.policy.Watermark(t.meta.Time) }

// apply records one interaction in the state. The campaigns due before it
// have fired.
func (t *task) apply(in *schemas.Interaction, at policy.Millis) error {
	late := at < t.watermark()
	if late {
		t.counts.late[in.Kind]++
	}
	if in.Kind == schemas.UserErased {
		// The marker covers every interaction of the user up to the
		// erasure's own time, whenever it arrives (ErasedAt).
		return t.batch.EraseUser(in.UserID, at, t.meta.Rounds)
	}
	if in.Kind == schemas.BusinessMessage {
		return nil
	}
	c, known, erasedAt, erased, err := t.batch.Lookup(in.UserID, in.BusinessID)
	if err != nil {
		return err
	}
	if erased && at <= erasedAt {
		t.counts.erased++ // not dead-lettered: that would keep what the user asked to erase
		return nil
	}
	// A contact past retention is forgotten whether or not the expiry sweep
	// has reached it yet, so a replay decides the same.
	// Folded in only what no campaign still to fire can be before: the
	// earliest fire time from now on is LateAsOf of the watermark.
	w := t.env.policy.LateAsOf(t.env.policy.Watermark(max(t.meta.Time, at)))
	if t.env.policy.ExpiredBefore(&c, at, w) {
		c = policy.Contact{}
	}
	if !known && c.Empty() && t.env.policy.Forgotten(at, w) {
		// A new contact forgotten on arrival (the interaction is more than
		// the retention behind the watermark): nothing to store, and not
		// storing it keeps out an erased user's past once the marker is
		// gone (state.Batch.SweepErasures).
		return nil
	}
	if late && c.LateSuppression(in.Kind, at) {
		t.counts.lateSuppressions[in.Kind]++
	}
	if !t.env.policy.Observe(&c, in.Kind, at, w) {
		return nil
	}
	return t.batch.PutContact(in.UserID, in.BusinessID, &c, known)
}

// fireByWallClock starts the pending campaigns whose send time the wall
// clock has passed; the runner calls it only when the task is caught up.
func (t *task) fireByWallClock(wall policy.Millis) error {
	w := wall - t.env.policy.Grace()
	t.startDue(func(c *policy.Progress) bool { return policy.DueByWallClock(c, w) })
	_, err := t.fanout()
	return err
}

// expire forgets, within a small budget per transaction, what no rule can
// use any more as of the task's time: contacts past retention, per-user
// delivery lists with nothing in the last 24 hours, finished campaigns past
// their expiry.
func (t *task) expire(limit int) error {
	if t.meta.Time == 0 {
		return nil
	}
	// As of the earliest time a campaign can still fire as of.
	now := t.env.policy.LateAsOf(t.watermark())
	next, _, err := t.batch.SweepContacts(t.sweep, limit, func(c *policy.Contact) bool {
		return t.env.policy.ContactExpired(c, now)
	})
	if err != nil {
		return err
	}
	t.sweep = next
	if next == nil {
		// A round over every contact of the partition is complete: the
		// erasure markers it began after have no stale contact left. The
		// count is written with the next metadata (not on its own: an
		// idle task would then write a transaction per tick); a restart
		// may lose some increments, which only delays a marker's
		// deletion.
		t.meta.Rounds++
	}
	next, _, err = t.batch.SweepErasures(t.sweepE, limit, t.meta.Rounds, func(at policy.Millis) bool {
		return t.env.policy.Forgotten(at, now)
	})
	if err != nil {
		return err
	}
	t.sweepE = next
	if t.env.policy.Config().UserCap > 0 {
		next, _, err := t.batch.SweepRecipients(t.sweepR, limit, func(r *policy.Recipient) bool {
			return t.env.policy.RecipientExpired(r, now)
		})
		if err != nil {
			return err
		}
		t.sweepR = next
	}
	for id, c := range t.camps {
		if policy.Forgettable(c, now) {
			if err := t.batch.DeleteCampaign(id); err != nil {
				return err
			}
			delete(t.camps, id)
		}
	}
	return nil
}

// finish writes the metadata and turns the batch into changelog records.
func (t *task) finish() error {
	if t.metaChanged {
		if err := t.batch.PutMeta(&t.meta); err != nil {
			return err
		}
	}
	if t.env.unsafe {
		return nil // no changelog: the negative control keeps state only in Pebble
	}
	for _, ch := range t.batch.Changes() {
		t.emit(t.env.names.Changelog, ch.Key, ch.Value)
	}
	return nil
}
