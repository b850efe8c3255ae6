package pipeline

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

// broadcast reads the campaigns topic (read_committed, every partition) so
// that every task of the instance sees every campaign. Tasks keep their own
// progress (the next offset per campaigns partition, and the replay offset
// from which a restore reads again: policy.Meta) in their state; broadcast
// only holds the records, as read, and says how far it has read: each task
// decides what a record does (task.applyCampaign, policy.Partition.Replay).
//
// Memory and start-up follow the tasks' pending work, not the topic's
// history: the reader starts each partition at the lowest replay offset of
// the tasks that asked for it (hold), not at the start, and drops the
// records below the lowest replay offset of the tasks it serves (progress,
// release). A task that comes later with a lower replay offset has the
// missing records read again (reread), added in front of those held. A task whose replay offset is below a partition's
// log start offset (the topic's retention deleted records it still needs)
// fails its load loudly (errCampaignsDeleted) instead of missing campaigns.
type broadcast struct {
	topic  string
	nparts int32
	log    *slog.Logger
	opts   []kgo.Opt // for the readers
	// metrics is the option that exports the reader's client metrics:
	// on the reader only, one client at a time (kprom's names are per
	// registry).
	metrics []kgo.Opt
	adm     *kadm.Client
	admCl   *kgo.Client

	mu    sync.Mutex
	cond  *sync.Cond
	cl    *kgo.Client             // nil until the first hold
	parts map[int32][]*kgo.Record // by partition, ascending offsets, transaction markers included
	start map[int32]int64         // every record from start to next is held, per partition
	next  map[int32]int64         // next offset not yet read, per partition
	needs map[*task][]int64       // each task's replay offsets, by campaigns partition
	// refilling has, per partition read again from below what is held,
	// the offset it is read from; prefix, what it read so far (add).
	refilling map[int32]int64
	prefix    map[int32][]*kgo.Record
	err       error // fatal read error
	// trimmed counts the records dropped below the tasks' replay offsets.
	trimmed int64

	// arrived has a value once campaign records came in since the loop
	// last took it: the loop's idle poll ends on it, so that a campaign
	// due at once fires now, not at the next Tick.
	arrived chan struct{}
}

// errCampaignsDeleted is returned (wrapped) when a campaigns partition no
// longer holds records a task needs to rebuild its campaigns.
var errCampaignsDeleted = errors.New("the campaigns topic no longer holds records a task needs")

func newBroadcast(topic string, nparts int, log *slog.Logger, opts, metrics []kgo.Opt) (*broadcast, error) {
	admCl, err := kgo.NewClient(opts...)
	if err != nil {
		return nil, fmt.Errorf("campaign reader: %w", err)
	}
	b := &broadcast{topic: topic, nparts: int32(nparts), log: log, opts: opts, metrics: metrics, adm: kadm.NewClient(admCl), admCl: admCl,
		parts: map[int32][]*kgo.Record{}, start: map[int32]int64{}, next: map[int32]int64{}, needs: map[*task][]int64{},
		refilling: map[int32]int64{}, prefix: map[int32][]*kgo.Record{}, arrived: make(chan struct{}, 1)}
	b.cond = sync.NewCond(&b.mu)
	return b, nil
}

// readerOpts returns the options of a reader of the campaigns partitions
// from the offsets from.
func (b *broadcast) readerOpts(from map[int32]int64) []kgo.Opt {
	offs := make(map[int32]kgo.Offset, len(from))
	for q, o := range from {
		offs[q] = kgo.NewOffset().At(o)
	}
	return append(slices.Concat(b.opts, b.metrics),
		kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{b.topic: offs}),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		kgo.KeepControlRecords(), // markers move our position to the LSO
	)
}

// run reads until ctx ends or the reader closes. It waits for the first
// hold, which starts the reader; a hold below what is held replaces the
// reader (reread), and run goes on with the new one.
func (b *broadcast) run(ctx context.Context) {
	defer b.wakeOnDone(ctx)()
	b.mu.Lock()
	for b.cl == nil && ctx.Err() == nil && b.err == nil {
		b.cond.Wait()
	}
	b.mu.Unlock()
	for {
		b.mu.Lock()
		cl := b.cl
		b.mu.Unlock()
		if cl == nil || ctx.Err() != nil {
			b.fail(errors.New("campaign reader stopped"))
			return
		}
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			b.fail(errors.New("campaign reader stopped"))
			return
		}
		b.mu.Lock()
		if cl != b.cl {
			b.mu.Unlock()
			continue // replaced by reread: what it read is stale
		}
		if fs.IsClientClosed() {
			b.mu.Unlock()
			b.fail(errors.New("campaign reader stopped"))
			return
		}
		fs.EachError(func(t string, p int32, err error) {
			b.log.Warn("campaign reader fetch error", "topic", t, "partition", p, "err", err)
		})
		batch := fs.Records()
		for _, r := range batch {
			b.add(r)
		}
		b.cond.Broadcast()
		b.mu.Unlock()
		if slices.ContainsFunc(batch, func(r *kgo.Record) bool { return !r.Attrs.IsControl() }) {
			b.wake()
		}
	}
}

// add takes record r the reader read (mu held). A partition read again
// from below what it holds (refill) collects the records below the first
// one held, and puts them in front once it reaches it.
func (b *broadcast) add(r *kgo.Record) {
	q := r.Partition
	if to, ok := b.refilling[q]; ok {
		if held := b.parts[q]; len(held) > 0 && r.Offset < held[0].Offset {
			if r.Offset >= to {
				b.prefix[q] = append(b.prefix[q], r)
			}
			return
		}
		b.log.Info("campaign records read again for a task behind the others", "campaigns_partition", q, "from", to, "records", len(b.prefix[q]))
		b.parts[q] = append(b.prefix[q], b.parts[q]...)
		b.start[q] = min(b.start[q], to)
		delete(b.refilling, q)
		delete(b.prefix, q)
	}
	if r.Offset < b.next[q] {
		return // held already
	}
	b.parts[q] = append(b.parts[q], r)
	b.next[q] = r.Offset + 1
}

// hold registers task t's need of the records of each campaigns partition
// from its replay offsets from on (missing partitions: from 0), and makes
// sure the reader holds them: the first hold starts the reader there; a
// later one below what is held has the reader read again from there
// (reread) and waits for it. It fails, naming the partition and offsets, if
// a partition's log start offset is above what t needs.
func (b *broadcast) hold(ctx context.Context, t *task, from map[int32]int64) error {
	need := make([]int64, b.nparts)
	for q := range need {
		need[q] = from[int32(q)]
	}
	if err := b.checkLogStart(ctx, t.p, need); err != nil {
		return err
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	b.needs[t] = need
	if b.cl == nil {
		offs := make(map[int32]int64, len(need))
		for q := range need {
			lo := b.lowest(int32(q))
			offs[int32(q)], b.start[int32(q)], b.next[int32(q)] = lo, lo, lo
		}
		cl, err := kgo.NewClient(b.readerOpts(offs)...)
		if err != nil {
			return fmt.Errorf("campaign reader: %w", err)
		}
		b.cl = cl
		b.cond.Broadcast()
		b.log.Info("campaign reader started", "from", offs)
		return nil
	}
	behind := false
	for q, o := range need {
		if o < b.start[int32(q)] {
			behind = true
		}
	}
	if behind {
		if err := b.reread(need); err != nil {
			return err
		}
	}
	// Wait until every partition is held from need on.
	defer b.wakeOnDone(ctx)()
	for {
		if b.err != nil {
			return b.err
		}
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("read the campaigns again from %v: %w", need, err)
		}
		done := true
		for q, o := range need {
			if _, ok := b.refilling[int32(q)]; ok || o < b.start[int32(q)] {
				done = false
			}
		}
		if done {
			return nil
		}
		b.cond.Wait()
	}
}

// reread replaces the reader (mu held) by one that reads each partition the
// need is below the start of from the need on, and every other from where
// the reader was: the records held stay, those read again below them are
// put in front (add).
func (b *broadcast) reread(need []int64) error {
	offs := make(map[int32]int64, len(need))
	for q := range b.nparts {
		o := need[q]
		switch {
		case o >= b.start[q]:
			o = b.next[q]
			if to, ok := b.refilling[q]; ok {
				o = to // a refill in progress starts over
				b.prefix[q] = nil
			}
		case len(b.parts[q]) == 0:
			// Nothing held: the reader goes back.
			b.start[q], b.next[q] = o, o
			delete(b.refilling, q)
			delete(b.prefix, q)
		default:
			if to, ok := b.refilling[q]; ok {
				o = min(o, to)
			}
			b.refilling[q] = o
			b.prefix[q] = nil
		}
		offs[q] = o
	}
	// The old reader closes first: its metrics go with it. run drops
	// what it still read.
	b.cl.Close()
	cl, err := kgo.NewClient(b.readerOpts(offs)...)
	if err != nil {
		b.err = fmt.Errorf("campaign reader: %w", err)
		b.cond.Broadcast()
		return b.err
	}
	b.cl = cl
	b.log.Info("campaign reader restarted for a task behind the others", "from", offs)
	return nil
}

// lowest returns the lowest need of partition q among the tasks (mu held);
// 0 when no task needs anything.
func (b *broadcast) lowest(q int32) int64 {
	lo, any := int64(0), false
	for _, need := range b.needs {
		if !any || need[q] < lo {
			lo, any = need[q], true
		}
	}
	return lo
}

// checkLogStart fails, naming the partition and the offsets, when a
// campaigns partition's log start offset is above what task p needs.
func (b *broadcast) checkLogStart(ctx context.Context, p int32, need []int64) error {
	starts, err := b.adm.ListStartOffsets(ctx, b.topic)
	if err != nil {
		return fmt.Errorf("list the start offsets of %s: %w", b.topic, err)
	}
	var errs []error
	starts.Each(func(o kadm.ListedOffset) {
		if o.Err != nil {
			errs = append(errs, fmt.Errorf("start offset of %s/%d: %w", b.topic, o.Partition, o.Err))
			return
		}
		if int(o.Partition) < len(need) && o.Offset > need[o.Partition] {
			err := fmt.Errorf("%w: partition %d of %s starts at offset %d, but task %d must replay it from offset %d: the topic's retention deleted campaigns the task has not finished with (a campaign older than half the retention that was not adopted); restore the records or reset the task's state",
				errCampaignsDeleted, o.Partition, b.topic, o.Offset, p, need[o.Partition])
			b.log.Error("campaigns deleted before the task was done with them", "campaigns_partition", o.Partition, "log_start_offset", o.Offset, "task", p, "replay_offset", need[o.Partition])
			errs = append(errs, err)
		}
	})
	return errors.Join(errs...)
}

// progress records task t's replay offsets after a commit, and drops the
// records no task needs any more.
func (b *broadcast) progress(t *task, replay []int64) {
	b.mu.Lock()
	defer b.mu.Unlock()
	need := b.needs[t]
	if need == nil {
		return // not held (a task of a test, or released)
	}
	for q := range need {
		if q < len(replay) {
			need[q] = replay[q]
		}
	}
	b.trim()
}

// release forgets task t's needs (its partition was revoked).
func (b *broadcast) release(t *task) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if _, ok := b.needs[t]; ok {
		delete(b.needs, t)
		b.trim()
	}
}

// trim drops, per partition, the records below the lowest need of the
// tasks (mu held). With no task, nothing is dropped: the next task may
// need them.
func (b *broadcast) trim() {
	if len(b.needs) == 0 {
		return
	}
	for q := range b.nparts {
		lo := b.lowest(q)
		if lo <= b.start[q] {
			continue
		}
		recs := b.parts[q]
		i, _ := slices.BinarySearchFunc(recs, lo, func(r *kgo.Record, off int64) int {
			switch {
			case r.Offset < off:
				return -1
			case r.Offset > off:
				return 1
			}
			return 0
		})
		b.trimmed += int64(i)
		// A new slice, so that a since result handed out before stays
		// valid and the dropped records can be collected.
		b.parts[q] = slices.Clone(recs[i:])
		b.start[q] = min(lo, b.next[q])
	}
}

// held returns how many records the reader holds.
func (b *broadcast) held() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	n := 0
	for _, recs := range b.parts {
		n += len(recs)
	}
	return n
}

// wake tells the loop that campaign records came in.
func (b *broadcast) wake() {
	select {
	case b.arrived <- struct{}{}:
	default: // the loop has not taken the last one yet
	}
}

func (b *broadcast) fail(err error) {
	b.mu.Lock()
	if b.err == nil {
		b.err = err
	}
	b.cond.Broadcast()
	b.mu.Unlock()
}

// waitFor blocks until the reader has read every partition up to ends
// (exclusive), or ctx ends.
func (b *broadcast) waitFor(ctx context.Context, ends map[int32]int64) error {
	defer b.wakeOnDone(ctx)()
	b.mu.Lock()
	defer b.mu.Unlock()
	for {
		if b.err != nil {
			return b.err
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		behind := false
		for p, end := range ends {
			if b.next[p] < end {
				behind = true
				break
			}
		}
		if !behind {
			return nil
		}
		b.cond.Wait()
	}
}

// since returns the records of partition p from offset from up to end
// (exclusive). The slice must not be modified.
func (b *broadcast) since(p int32, from, end int64) []*kgo.Record {
	b.mu.Lock()
	defer b.mu.Unlock()
	recs := b.parts[p]
	// Offsets ascend; find the first at or after from.
	lo, hi := 0, len(recs)
	for lo < hi {
		m := (lo + hi) / 2
		if recs[m].Offset < from {
			lo = m + 1
		} else {
			hi = m
		}
	}
	j := lo
	for j < len(recs) && recs[j].Offset < end {
		j++
	}
	return recs[lo:j]
}

func (b *broadcast) close() {
	b.mu.Lock()
	cl := b.cl
	b.mu.Unlock()
	if cl != nil {
		cl.Close()
	}
	b.admCl.Close()
	b.fail(errors.New("campaign reader closed"))
}

// wakeOnDone wakes the waiters of b.cond when ctx ends, so that a wait
// checking ctx.Err() returns; the function it returns stops that (defer it).
func (b *broadcast) wakeOnDone(ctx context.Context) (stop func() bool) {
	return context.AfterFunc(ctx, func() {
		b.mu.Lock()
		b.cond.Broadcast()
		b.mu.Unlock()
	})
}
