package pipeline

import (
	"context"
	"errors"
	"fmt"
	"time"
	"unsafe"

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
	p   int32
	env *env
	// part decides what the partition does; the task feeds it records
	// and turns its decisions into records (the task is its
	// policy.Output) over the transaction's batch (its policy.Store).
	part *policy.Partition
	// fanning tallies the fan-outs in progress for the metrics, as of the
	// last committed transaction (in memory only: a fan-out resumed by
	// another instance or after a restart is tallied from there).
	fanning map[string]*fanoutTally

	// last is the task's last committed batch, which Pebble may still be
	// applying (state.Batch.Apply): the next batch follows it.
	last *state.Batch

	// Per transaction.
	batch *state.Batch
	out   []*kgo.Record
	// sink, when the loop gives one (attach), takes the records of out
	// while the task works, from sent on, so that the client sends them
	// while the task decides the next ones (see sendEvery).
	sink   *recordSink
	sent   int
	counts counts
	fired  []string      // campaigns whose fan-out finished, for the log and the metrics
	wall   policy.Millis // the wall clock as the transaction began
	// enc holds the templates of encFor's records, encoded for the
	// first record of a chunk (most chunks of small campaigns have none)
	// and kept for the rest of the transaction.
	enc    *encoders
	encFor *policy.Progress
	// The chunk in progress: the cursor it began after, and its
	// candidates and their outcomes, gathered for its one decisions
	// record (copies in the arena, valid until the transaction ends).
	chunkAfter    string
	chunkUsers    []string
	chunkOutcomes []schemas.Outcome

	// The records of a transaction and the bytes of the keys and values
	// the task encodes for them, reused from one transaction to the next:
	// franz-go is done with every record once the transaction has ended
	// (the loop waits for every record's promise, and stops the instance
	// if some never come: see txnOutputs). A fan-out
	// of 5000 decisions otherwise allocated a record, a key and an
	// encoding buffer per inbox and decision record.
	slab  []kgo.Record
	arena []byte
	idbuf []byte // the delivery id of the last delivery

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
	// campaignRetention is the campaigns topic's retention.ms (0:
	// infinite), read at start: policy.Partition.SetRetention.
	campaignRetention policy.Millis
	unsafe            bool          // Config.UnsafeNoTransactions
	skew              policy.Millis // Config.MaxClockSkew
	// partitions and partitioner say where each interaction belongs: the
	// interactions topic's partition count and Config.Partitioner.
	partitions  int32
	partitioner topics.Partitioner
}

// newTask returns task p of env, its state restored in the store: loaded,
// with the partition's contact filter built from every contact key.
func newTask(ctx context.Context, p int32, env *env) (*task, error) {
	return newTaskFilter(ctx, p, env, nil)
}

// newTaskFilter is newTask with the partition's contact filter, when
// contacts is not nil (a standby's, kept as it applied the changelog),
// instead of one built from the store.
func newTaskFilter(ctx context.Context, p int32, env *env, contacts *state.ContactFilter) (*task, error) {
	t := &task{p: p, env: env}
	if err := t.load(ctx); err != nil {
		return nil, err
	}
	t.contacts = contacts
	if contacts == nil {
		var err error
		if t.contacts, err = env.store.ContactFilter(p); err != nil {
			return nil, err
		}
	}
	return t, nil
}

// load (re)reads the task's in-memory view from the store, dropping anything
// staged: used after a restore and after an aborted transaction. The
// campaigns the store has no record of are rebuilt from the campaigns
// topic (replayCampaigns).
func (t *task) load(ctx context.Context) error {
	t.discard()
	meta, cs, err := t.env.store.LoadTask(t.p) // after the last batch's apply
	if err != nil {
		return err
	}
	t.last = nil
	if t.part == nil {
		t.part = policy.NewPartition(t.env.policy)
		t.part.SetRetention(t.env.campaignRetention)
	}
	t.part.Load(meta, cs)
	return t.replayCampaigns(ctx)
}

// replayCampaigns feeds the partition (policy.Partition.Replay) the
// campaign records it read before from its replay offsets up to its
// campaigns offsets, waiting for the broadcast reader to hold them. It
// writes nothing: the records at and after the campaigns offsets are new,
// as always (syncCampaigns).
func (t *task) replayCampaigns(ctx context.Context) error {
	bc := t.env.campaign
	if bc == nil {
		return nil
	}
	m := t.part.Meta()
	if err := bc.hold(ctx, t, replayFrom(m)); err != nil {
		return fmt.Errorf("partition %d: %w", t.p, err)
	}
	ends := map[int32]int64{}
	for q, end := range m.Campaigns {
		if m.Replay[q] < end {
			ends[int32(q)] = end
		}
	}
	if len(ends) == 0 {
		return nil
	}
	if err := bc.waitFor(ctx, ends); err != nil {
		return fmt.Errorf("partition %d: read the campaigns to replay up to %v: %w", t.p, ends, err)
	}
	for q, end := range ends {
		for _, r := range bc.since(q, m.Replay[q], end) {
			if r.Attrs.IsControl() {
				continue
			}
			c, reason, err := decodeCampaign(t.env.serde, r)
			if reason != "" {
				continue // dead-lettered when first read
			}
			if err != nil {
				return fmt.Errorf("partition %d: replay campaigns: %w", t.p, err)
			}
			t.part.Replay(&c, campaignSource(r))
		}
	}
	return nil
}

// replayFrom returns the replay offsets of m by campaigns partition.
func replayFrom(m policy.Meta) map[int32]int64 {
	from := make(map[int32]int64, len(m.Replay))
	for q, off := range m.Replay {
		from[int32(q)] = off
	}
	return from
}

// campaignSource returns where campaign record r is in the topic.
func campaignSource(r *kgo.Record) policy.Source {
	return policy.Source{Partition: r.Partition, Offset: r.Offset, Time: r.Timestamp.UnixMilli()}
}

// discard drops what the task staged in the transaction in progress, if
// any.
func (t *task) discard() {
	if t.batch != nil {
		t.batch.Close()
		t.batch = nil
	}
}

// records returns the records of the transaction in progress, in the order
// the task added them.
func (t *task) records() []*kgo.Record { return t.out }

// settle hands the batch of a committed transaction to the store: applied
// with checkpoint next when the transaction carried changelog records
// (changed) or, with no changelog (Config.UnsafeNoTransactions), when it
// changed anything; dropped otherwise. The task's next batch follows it.
// It reports false when the task had no transaction in progress.
func (t *task) settle(next int64, changed bool) (bool, error) {
	if t.batch == nil {
		return false, nil
	}
	b := t.batch
	t.batch = nil
	if !changed && !(t.env.unsafe && !b.Empty()) {
		b.Close()
		return true, nil
	}
	if err := b.Apply(next); err != nil {
		return true, err
	}
	t.last = b
	if t.env.campaign != nil {
		// What the task may need again on a restore is committed: the
		// reader may drop what is below it.
		t.env.campaign.progress(t, t.part.Meta().Replay)
	}
	return true, nil
}

// begin starts the task's part of a transaction, which began when the
// wall clock read wall.
func (t *task) begin(wall policy.Millis) {
	t.wall = wall
	t.batch = t.env.store.NewBatch(t.p)
	if t.last != nil {
		t.batch.Follow(t.last)
	}
	if t.contacts != nil {
		t.batch.UseFilter(t.contacts)
	}
	t.out, t.sent = t.out[:0], 0
	t.slab, t.arena = t.slab[:0], t.arena[:0]
	t.counts = counts{}
	t.fired = t.fired[:0]
	t.enc, t.encFor = nil, nil
	t.part.Begin(t.batch, t, t.env.chunk)
}

// syncCampaigns applies the campaign records the task has not seen, up to
// ends (exclusive) per campaigns partition. Task 0 dead-letters bad campaign
// records, so each is dead-lettered once, in a transaction.
func (t *task) syncCampaigns(ends map[int32]int64, nparts int) error {
	t.part.CampaignPartitions(nparts)
	for q := int32(0); q < int32(nparts); q++ {
		from, end := t.part.CampaignOffset(q), ends[q]
		if from >= end {
			continue
		}
		for _, r := range t.env.campaign.since(q, from, end) {
			if err := t.applyCampaign(r); err != nil {
				return err
			}
			t.part.SetCampaignOffset(q, r.Offset+1)
		}
		t.part.SetCampaignOffset(q, end)
	}
	return nil
}

// applyCampaign decides what one record of the campaigns topic does to
// the task: a transaction marker nothing; a record that does not decode or
// validate (decodeCampaign), or that the partition's admission finds
// invalid, a dead letter (written by task 0 only); any other goes to the
// partition's admission (policy.Partition.Admit).
func (t *task) applyCampaign(r *kgo.Record) error {
	if r.Attrs.IsControl() {
		return nil
	}
	c, reason, err := decodeCampaign(t.env.serde, r)
	if reason != "" {
		t.deadLetterCampaign(r, reason, err)
		return nil
	}
	if err != nil {
		return err
	}
	t.counts.campaignsSeen++
	verdict, err := t.part.Admit(&c, campaignSource(r))
	if err != nil {
		return err
	}
	if verdict == policy.Invalid {
		t.deadLetterCampaign(r, deadletter.ReasonCampaignExpiresBeforeSend,
			fmt.Errorf("campaign %s expires at %s, before its send_at %s", c.CampaignID, c.ExpiresAt.UTC().Format("2006-01-02T15:04:05.000Z"), c.SendAt.UTC().Format("2006-01-02T15:04:05.000Z")))
	}
	return nil
}

// decodeCampaign returns the campaign of r, or the dead-letter reason and
// the error saying why r cannot be accepted, or an error alone when the
// failure is not the record's (the registry did not answer): the
// transaction then aborts, and the record is read again.
func decodeCampaign(serde *wire.Serde, r *kgo.Record) (schemas.Campaign, deadletter.Reason, error) {
	c, err := serde.DecodeCampaign(r.Value)
	if err != nil {
		var de *wire.DecodeError
		if errors.As(err, &de) {
			return c, de.Reason, err
		}
		return c, "", fmt.Errorf("decode campaign at %s/%d@%d: %w", r.Topic, r.Partition, r.Offset, err)
	}
	switch {
	case c.CampaignID == "":
		return c, deadletter.ReasonEmptyCampaignID, errors.New("campaign_id is empty")
	case string(r.Key) != c.CampaignID:
		return c, deadletter.ReasonMisroutedKey, fmt.Errorf("record key %q is not the campaign_id %q", r.Key, c.CampaignID)
	case c.BusinessID == "":
		return c, deadletter.ReasonEmptyBusinessID, errors.New("business_id is empty")
	}
	return c, "", nil
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
	ok, err := t.part.Fanout()
	if err != nil {
		return false, fmt.Errorf("partition %d: %w", t.p, err)
	}
	return ok, nil
}

// Chunking implements policy.Output: it starts gathering the chunk's
// decisions, and the tally of a fan-out the task has not seen begin.
func (t *task) Chunking(c *policy.Progress) {
	t.chunkAfter = c.Cursor
	t.chunkUsers, t.chunkOutcomes = t.chunkUsers[:0], t.chunkOutcomes[:0]
	if t.fanning[c.Campaign.ID] == nil {
		if t.fanning == nil {
			t.fanning = map[string]*fanoutTally{}
		}
		t.fanning[c.Campaign.ID] = &fanoutTally{start: time.Now(), contacts: -1, business: c.Campaign.Business}
	}
}

// Decided implements policy.Output: it counts the decision, adds the
// inbox message of a delivery to the transaction and gathers the decision
// for the chunk's decisions record (written by Chunked).
func (t *task) Decided(c *policy.Progress, user string, reason policy.Reason) error {
	t.counts.decisions[reason]++
	decisions := t.env.names.Decisions != ""
	if !decisions && reason != policy.Delivered {
		return nil
	}
	// One copy of the user for the inbox record's key and the chunk's
	// list.
	key := t.key(user)
	if decisions {
		t.chunkUsers = append(t.chunkUsers, unsafe.String(unsafe.SliceData(key), len(key)))
		t.chunkOutcomes = append(t.chunkOutcomes, schemas.Outcome(reason)) // the same order: TestOutcomesFollowReasons
	}
	if reason == policy.Delivered {
		if t.encFor != c {
			enc, err := t.templates(c)
			if err != nil {
				return err
			}
			t.enc, t.encFor = enc, c
		}
		// The id in a reused buffer: deliver copies it into the record.
		t.idbuf = schemas.AppendDeliveryID(t.idbuf[:0], c.Campaign.ID, user)
		t.deliver(t.enc.inbox, key, unsafe.String(unsafe.SliceData(t.idbuf), len(t.idbuf)), user)
	}
	return nil
}

// Chunked implements policy.Output: it writes the chunk's decisions
// record, when the chunk had candidates, and tallies the chunk for the
// metrics.
func (t *task) Chunked(c *policy.Progress, ch policy.Chunk) error {
	if len(t.chunkUsers) > 0 {
		if err := t.decidedChunk(c, ch.Done); err != nil {
			return err
		}
	}
	if t.counts.candidates == nil {
		t.counts.candidates = map[string]int64{}
	}
	t.counts.candidates[c.Campaign.ID] += ch.Candidates
	if t.counts.visited == nil {
		t.counts.visited, t.counts.delivered = map[string]int64{}, map[string]int64{}
	}
	t.counts.visited[c.Campaign.ID] += ch.Visited
	t.counts.delivered[c.Campaign.ID] += ch.Delivered
	if f := t.fanning[c.Campaign.ID]; f.contacts < 0 {
		// How far the fan-out has to go, for its progress
		// (sponsor_fanout_contacts): known after its first chunk. Only
		// a fan-out longer than a chunk counts the rest, one scan of
		// the keys after the cursor; most campaigns, a few hundred
		// contacts, pay nothing. (Counting every fan-out up front cost
		// 3-8% of the CPU per delivery of a 300k fan-out.) A fan-out
		// resumed after a restart counts from its cursor on.
		f.contacts = ch.Visited
		if !ch.Done {
			rest, err := t.batch.CountContacts(c.Campaign.Business, c.Cursor)
			if err != nil {
				return fmt.Errorf("count the contacts of %s on partition %d: %w", c.Campaign.Business, t.p, err)
			}
			f.contacts += rest
		}
	}
	if ch.Done {
		t.counts.campaignsFired++
		t.fired = append(t.fired, c.Campaign.ID)
	}
	return nil
}

// Counted implements policy.Output: the late interactions, late
// suppressions and erased interactions have their metrics; policy.Forgot
// has none.
func (t *task) Counted(tally policy.Tally, kind schemas.InteractionKind) {
	switch tally {
	case policy.Late:
		t.counts.late[kind]++
	case policy.LateSuppression:
		t.counts.lateSuppressions[kind]++
	case policy.Erased:
		t.counts.erased++
	}
}

// fanouts returns the tallies of the fan-outs in progress, by campaign, as
// of the last committed transaction. The map must not be changed.
func (t *task) fanouts() map[string]*fanoutTally { return t.fanning }

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

// encoders are the templates of a campaign's inbox records, encoded once
// per chunk of its fan-out that delivers (a campaign runs at most one chunk
// per transaction) rather than once per delivery.
type encoders struct {
	inbox *wire.InboxTemplate
}

// templates returns the encoders of campaign c's records.
func (t *task) templates(c *policy.Progress) (*encoders, error) {
	tpl, err := t.env.serde.InboxTemplate(&schemas.InboxMessage{
		BusinessID: c.Campaign.Business,
		CampaignID: c.Campaign.ID,
		SentAt:     millisTime(c.FireAt),
		Message:    c.Message,
	})
	if err != nil {
		return nil, fmt.Errorf("encode inbox message: %w", err)
	}
	return &encoders{inbox: tpl}, nil
}

// decidedChunk writes the decisions record of the chunk of c's fan-out
// that just ended (its candidates gathered by Decided), keyed by the
// campaign, to the task's partition of the decisions topic: one record for
// the chunk, not one per candidate (the decision record per candidate was
// a third of a fan-out's CPU and the largest topic).
func (t *task) decidedChunk(c *policy.Progress, done bool) error {
	tpl, err := t.env.serde.DecisionChunkTemplate(&schemas.DecisionChunk{
		BusinessID:  c.Campaign.Business,
		CampaignID:  c.Campaign.ID,
		DecidedAsOf: millisTime(c.FireAt),
		Partition:   t.p,
	})
	if err != nil {
		return fmt.Errorf("encode decisions of %s: %w", c.Campaign.ID, err)
	}
	start := len(t.arena)
	if t.arena, err = tpl.Append(t.arena, t.chunkAfter, done, t.chunkUsers, t.chunkOutcomes); err != nil {
		return fmt.Errorf("encode decisions of %s: %w", c.Campaign.ID, err)
	}
	value := t.arena[start:len(t.arena):len(t.arena)]
	t.emit(t.env.names.Decisions, t.key(c.Campaign.ID), value)
	t.chunkUsers, t.chunkOutcomes = t.chunkUsers[:0], t.chunkOutcomes[:0]
	return nil
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
	if t.sink != nil && len(t.out)-t.sent >= sendEvery {
		t.send()
	}
}

// sendEvery is how many records a task gathers before it hands them to the
// transaction's producer (its sink), while it works: a fan-out's 10,000
// records per chunk then go out while the task decides, rather than all
// after every task's work (measured: the produce phase was as long as the
// tasks' work, and did not overlap it).
const sendEvery = 512

// send hands the records the task added since the last send to its sink,
// in the order the task added them. Records are never changed once added
// (emit), so the client may hold them while the task goes on.
func (t *task) send() {
	t.sink.produce(t.out[t.sent:])
	t.sent = len(t.out)
}

// unsent returns the records the task added since the last send.
func (t *task) unsent() []*kgo.Record { return t.out[t.sent:] }

// process continues the fan-outs within the transaction's budget, then
// applies the task's records in order: those no fan-out in progress could
// count differently flow beside them (policy.Partition.Interaction). It
// stops early, returning the index of the first record it did not process,
// at one the partition holds until its fan-outs end: the rest waits for a
// later transaction (event-time order is kept).
func (t *task) process(recs []*kgo.Record) (int, error) {
	if _, err := t.fanout(); err != nil {
		return 0, err
	}
	for i, r := range recs {
		if r.Offset < t.part.Input() && !t.env.unsafe {
			continue // already applied: an offset reset or a re-fetch
		}
		if r.Attrs.IsControl() {
			t.part.Consumed(r.Offset)
			continue
		}
		in, reason, err := t.decode(r)
		if err != nil {
			return i, err // infrastructure: the transaction aborts
		}
		if reason != "" {
			t.part.Consumed(r.Offset)
			continue
		}
		ok, err := t.part.Interaction(in.UserID, in.BusinessID, in.Kind, policy.ToMillis(in.OccurredAt))
		if err != nil {
			return i, fmt.Errorf("partition %d: %w", t.p, err)
		}
		if !ok {
			return i, nil // held until the fan-outs end
		}
		t.part.Consumed(r.Offset)
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
func (t *task) watermark() policy.Millis { return t.part.Watermark() }

// fireByWallClock starts the pending campaigns whose send time the wall
// clock has passed; the runner calls it only when the task is caught up.
func (t *task) fireByWallClock(wall policy.Millis) error {
	if err := t.part.FireByWallClock(wall); err != nil {
		return fmt.Errorf("partition %d: %w", t.p, err)
	}
	return nil
}

// expire forgets, within a small budget per transaction, what no rule can
// use any more as of the task's time (policy.Partition.Expire), and adopts
// the campaigns whose topic record may be deleted by the topic's retention
// before the task is done with them (policy.Partition.Adopt).
func (t *task) expire(limit int) error {
	if err := t.part.Expire(limit); err != nil {
		return err
	}
	return t.part.Adopt(t.wall)
}

// finish writes the metadata and turns the batch into changelog records.
func (t *task) finish() error {
	if err := t.part.Finish(); err != nil {
		return err
	}
	if t.env.unsafe {
		return nil // no changelog: the negative control keeps state only in Pebble
	}
	for _, ch := range t.batch.Changes() {
		t.emit(t.env.names.Changelog, ch.Key, ch.Value)
	}
	return nil
}
