package pipeline

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/sponsored/sponsor/policy"
	"github.com/sponsored/sponsor/state"
)

// sweepPerTxn is how many contacts a task checks for expiry per transaction.
const sweepPerTxn = 256

// loop is the instance's one processing goroutine: poll, process every task
// in one transaction, commit, apply the state, repeat.
func (r *Runner) loop(ctx context.Context) error {
	var failures int
	for {
		if ctx.Err() != nil {
			return nil
		}
		wait := r.cfg.Tick
		if r.fanningOut() {
			wait = time.Millisecond // the fan-out goes on at once
		}
		pollCtx, cancel := context.WithTimeout(ctx, wait)
		// A campaign that arrives ends the wait: if it is due, it fires
		// now rather than at the next Tick.
		polled := make(chan struct{})
		go func() {
			select {
			case <-r.env.campaign.arrived:
				select {
				case <-polled: // too late for this poll: keep it for the next
					r.env.campaign.wake()
				default:
					cancel()
				}
			case <-polled:
			}
		}()
		fs := r.sess.PollRecords(pollCtx, r.cfg.MaxPollRecords)
		close(polled)
		cancel()
		if fs.IsClientClosed() {
			return errors.New("kafka client closed")
		}
		var fetchErr error
		fs.EachError(func(t string, p int32, err error) {
			if !errors.Is(err, context.DeadlineExceeded) && !errors.Is(err, context.Canceled) {
				r.log.Warn("fetch error", "topic", t, "partition", p, "err", err)
				fetchErr = err
			}
		})
		if err := r.adopt(); err != nil {
			r.sess.AllowRebalance()
			return err
		}
		// A shutdown lets the iteration in flight finish and commit.
		iterCtx, cancelIter := context.WithTimeout(context.WithoutCancel(ctx), r.cfg.TransactionTimeout)
		err := markUnusable(r.iteration(iterCtx, fs))
		cancelIter()
		r.sess.AllowRebalance()
		switch {
		case err == nil:
			failures = 0
		case isFatal(err):
			return err
		default:
			failures++
			r.log.Warn("transaction failed; retrying from the last commit", "err", err, "failures", failures)
			select {
			case <-ctx.Done():
			case <-time.After(min(time.Duration(failures)*200*time.Millisecond, 5*time.Second)):
			}
		}
		if fetchErr = markUnusable(fetchErr); fetchErr != nil && isFatal(fetchErr) {
			return fetchErr
		}
	}
}

// isFatal reports whether err means this session must end: its producer
// cannot be used again (errProducerUnusable: Run may open a new one) or the
// instance must stop.
func isFatal(err error) bool {
	return errors.Is(err, errProducerUnusable) || errors.Is(err, kerr.TransactionalIDAuthorizationFailed) || errors.Is(err, errStop) ||
		errors.Is(err, state.ErrApply)
}

var (
	errStop = errors.New("stop")
	// errProducerUnusable marks an error after which the session's
	// transactional producer cannot be used again: it was fenced, or
	// franz-go holds a fatal error for its producer id.
	errProducerUnusable = errors.New("transactional producer unusable")
)

// markUnusable wraps err with errProducerUnusable when it says the
// producer's epoch was bumped under it (fenced).
func markUnusable(err error) error {
	if err != nil && !errors.Is(err, errProducerUnusable) && (errors.Is(err, kerr.ProducerFenced) || errors.Is(err, kerr.InvalidProducerEpoch)) {
		return fmt.Errorf("%w (fenced): %w", errProducerUnusable, err)
	}
	return err
}

// adopt takes the tasks the group callbacks handed over.
func (r *Runner) adopt() error {
	r.handMu.Lock()
	defer r.handMu.Unlock()
	if r.restoreErr != nil {
		return fmt.Errorf("%w: %w", errStop, r.restoreErr)
	}
	changed := len(r.revoked) > 0 || len(r.incoming) > 0
	for p := range r.revoked {
		if t, ok := r.tasks[p]; ok {
			t.discard()
			delete(r.tasks, p)
		}
		delete(r.revoked, p)
	}
	adopted := len(r.incoming) > 0
	for p, t := range r.incoming {
		r.tasks[p] = t
		delete(r.incoming, p)
	}
	if adopted {
		// The client keeps a partition's pause across rebalances: one
		// paused during a fan-out of an earlier owner's task (this
		// instance's, before it lost the partition) would stay paused,
		// and with no record, no iteration would ever resume it
		// (TestZombieFenced once stalled so in CI).
		r.syncPauses()
	}
	r.stats.TasksAssigned.Store(int64(len(r.tasks)))
	if changed || r.owned.Load() == nil {
		owned := slices.Sorted(maps.Keys(r.tasks))
		r.owned.Store(&owned)
	}
	if len(r.tasks) == 0 {
		r.stats.setLag(nil) // iterations do not run without tasks
		r.stats.setStable(nil)
		r.stable = stableWatch{}
	}
	r.ready.Store(r.joined.Load() && r.restoring.Load() == 0 && len(r.incoming) == 0)
	return nil
}

// iteration runs one transaction over every task.
func (r *Runner) iteration(ctx context.Context, fs kgo.Fetches) (err error) {
	byPart := map[int32][]*kgo.Record{}
	fs.EachRecord(func(rec *kgo.Record) {
		if rec.Topic == r.names.Interactions {
			byPart[rec.Partition] = append(byPart[rec.Partition], rec)
		}
	})
	if len(r.tasks) == 0 {
		return nil
	}
	if err := r.sess.Begin(); err != nil {
		// A failed End can leave the client in the transaction (franz-go
		// returns before ending it when its flush fails, e.g. after the
		// process was paused past its deadline): end it and try again.
		if aerr := r.abortInFlight(ctx); aerr != nil {
			return aerr
		}
		if err := r.sess.Begin(); err != nil {
			// Not in a transaction any more, Begin fails only when
			// franz-go keeps a fatal error for the producer id (e.g.
			// INVALID_TXN_STATE after a fence it could not recover
			// from): retrying would fail the same way for ever.
			return fmt.Errorf("%w: begin transaction: %w", errProducerUnusable, err)
		}
	}
	committed := false
	defer func() {
		if committed {
			return
		}
		if rerr := r.reset(); rerr != nil {
			// A task that cannot reload its committed state would go on
			// from the aborted one: stop, and let a restore rebuild it.
			err = errors.Join(err, fmt.Errorf("%w: reload the tasks after the transaction failed: %w", errStop, rerr))
		}
	}()
	workStart := time.Now()
	err = r.work(ctx, byPart)
	if err != nil {
		endCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), r.cfg.TransactionTimeout)
		defer cancel()
		if _, aerr := r.sess.End(endCtx, kgo.TryAbort); aerr != nil {
			return errors.Join(err, r.abortInFlight(ctx))
		}
		r.stats.Aborts.Add(1)
		return err
	}

	produceStart := time.Now()
	// Produce everything, remembering each task's last changelog offset.
	out := &txnOutputs{changelog: r.names.Changelog, lastChange: map[int32]int64{}}
	any := false
	promise := out.promise // one closure for all records, not one per record
	tasks := r.sortedTasks()
	for _, t := range tasks {
		for _, rec := range t.records() {
			any = true
			out.wg.Add(1)
			r.sess.Produce(ctx, rec, promise)
		}
	}
	endCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), r.cfg.TransactionTimeout)
	defer cancel()
	if !any && len(byPart) == 0 {
		// Nothing consumed, nothing changed: end the empty transaction
		// without a round trip.
		committed = true
		for _, t := range tasks {
			t.discard()
		}
		if _, err := r.sess.End(endCtx, kgo.TryAbort); err != nil {
			return errors.Join(fmt.Errorf("end empty transaction: %w", err), r.abortInFlight(ctx))
		}
		return nil
	}
	// End flushes, commits the offsets and ends the transaction. The
	// offsets committed are each task's own next offset, for every task, so
	// the group's offsets always equal the state's, and every transaction
	// carries an offset commit: the group generation check in it fences a
	// zombie even in a transaction that only continues a fan-out.
	endCtx = kgo.PreTxnCommitFnContext(endCtx, func(req *kmsg.TxnOffsetCommitRequest) error {
		r.taskOffsets(req, tasks)
		return nil
	})
	endStart := time.Now()
	// franz-go commits what did get written even when a record of the
	// transaction failed for good (a non-retriable produce error such as
	// INVALID_RECORD fails only that record): flush, wait for every
	// record's promise, and abort if any record failed, or the offsets
	// would move past a delivery or a state change that is not in Kafka.
	if err := r.sess.Client().Flush(endCtx); err != nil {
		r.stats.Aborts.Add(1)
		return errors.Join(fmt.Errorf("flush transaction: %w", err), r.abortInFlight(ctx), out.wait(r.cfg.TransactionTimeout))
	}
	if err := out.wait(r.cfg.TransactionTimeout); err != nil {
		r.stats.Aborts.Add(1)
		return errors.Join(err, r.abortInFlight(ctx))
	}
	flushed := time.Now()
	if perr := out.failed(); perr != nil {
		r.stats.Aborts.Add(1)
		if aerr := r.abortInFlight(ctx); aerr != nil {
			return errors.Join(fmt.Errorf("produce: %w", perr), aerr)
		}
		return fmt.Errorf("produce failed; transaction aborted: %w", perr)
	}
	ok, err := r.sess.End(endCtx, kgo.TryCommit)
	if err != nil {
		r.stats.Aborts.Add(1)
		if aerr := r.abortInFlight(ctx); aerr != nil {
			return errors.Join(fmt.Errorf("end transaction: %w", err), aerr)
		}
		return fmt.Errorf("end transaction: %w", err)
	}
	if !ok {
		r.stats.Aborts.Add(1)
		return errors.New("transaction aborted (a rebalance revoked or lost partitions during it)")
	}
	lastChange := out.lastChange
	committed = true
	if any {
		ended := time.Now()
		r.stats.Transactions.Add(1)
		r.stats.observeCommit(ended.Sub(endStart))
		r.stats.observePhases(produceStart.Sub(workStart), endStart.Sub(produceStart), flushed.Sub(endStart), ended.Sub(flushed))
	}
	if r.log.Enabled(ctx, slog.LevelDebug) {
		var outs int
		for _, t := range tasks {
			outs += len(t.records())
		}
		r.log.Debug("transaction committed", "records_in", len(byPart), "records_out", outs, "tasks", len(tasks), "fanning_out", r.fanningOut())
	}
	// The transaction is durable: the state may move. Each task's batch is
	// applied on a goroutine of its own while the next transaction runs;
	// the task's next batch reads through it until it is in Pebble.
	for _, t := range tasks {
		next, changed := lastChange[t.p]
		ok, err := t.settle(next, changed)
		if err != nil {
			return fmt.Errorf("%w: apply committed state of partition %d: %w", errStop, t.p, err)
		}
		if !ok {
			continue
		}
		r.campaignsFired(t.committed(&r.stats))
	}
	r.campaignsDone()
	r.fanoutProgress()
	r.syncPauses()
	return nil
}

// txnOutputs follows the records of one transaction: it counts their
// promises, so that the loop knows when franz-go is done with every record
// (Flush waits only for the records it buffered; a record that fails before
// it is buffered, e.g. when its produce context expires while the client's
// buffer is full, has its promise run later on another goroutine), keeps
// the first failure, and each task's last changelog offset.
type txnOutputs struct {
	wg         sync.WaitGroup
	changelog  string
	mu         sync.Mutex
	err        error
	lastChange map[int32]int64
}

func (o *txnOutputs) promise(rec *kgo.Record, err error) {
	defer o.wg.Done()
	o.mu.Lock()
	defer o.mu.Unlock()
	if err != nil {
		if o.err == nil {
			o.err = err
		}
		return
	}
	if rec.Topic == o.changelog && rec.Offset+1 > o.lastChange[rec.Partition] {
		o.lastChange[rec.Partition] = rec.Offset + 1
	}
}

// failed returns the first record failure, once wait returned nil.
func (o *txnOutputs) failed() error {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.err
}

// wait waits, at most d, until every record's promise has run. If some
// have not, franz-go may still use records the tasks reuse in their next
// transaction: the instance must stop (errStop).
func (o *txnOutputs) wait(d time.Duration) error {
	done := make(chan struct{})
	go func() { o.wg.Wait(); close(done) }()
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-done:
		return nil
	case <-t.C:
		return fmt.Errorf("%w: records of the transaction still unaccounted for after %s", errStop, d)
	}
}

// abortInFlight ends, by aborting, a transaction a failed End left open,
// with a fresh deadline. If even that fails the client cannot be trusted
// with another transaction: the instance stops (errStop) and its partitions
// move to another instance.
func (r *Runner) abortInFlight(ctx context.Context) error {
	actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), r.cfg.TransactionTimeout)
	defer cancel()
	if _, err := r.sess.End(actx, kgo.TryAbort); err != nil {
		return fmt.Errorf("%w: abort the transaction left open: %w", errStop, err)
	}
	return nil
}

// taskOffsets sets, in a transaction's offset commit, the interactions
// offset of every task to the task's next offset.
func (r *Runner) taskOffsets(req *kmsg.TxnOffsetCommitRequest, tasks []*task) {
	var rt *kmsg.TxnOffsetCommitRequestTopic
	for i := range req.Topics {
		if req.Topics[i].Topic == r.names.Interactions {
			rt = &req.Topics[i]
		}
	}
	if rt == nil {
		req.Topics = append(req.Topics, kmsg.NewTxnOffsetCommitRequestTopic())
		rt = &req.Topics[len(req.Topics)-1]
		rt.Topic, rt.TopicID = r.names.Interactions, r.interactionsID
	}
	rt.Partitions = rt.Partitions[:0]
	for _, t := range tasks {
		if t.part.Input() < 0 {
			continue
		}
		p := kmsg.NewTxnOffsetCommitRequestTopicPartition()
		p.Partition, p.Offset, p.LeaderEpoch, p.Metadata = t.p, t.part.Input(), -1, &req.MemberID
		rt.Partitions = append(rt.Partitions, p)
	}
}

func (r *Runner) sortedTasks() []*task {
	ts := make([]*task, 0, len(r.tasks))
	for _, t := range r.tasks {
		ts = append(ts, t)
	}
	slices.SortFunc(ts, func(a, b *task) int { return int(a.p - b.p) })
	return ts
}

// work does every task's part of the transaction.
func (r *Runner) work(ctx context.Context, byPart map[int32][]*kgo.Record) error {
	// Every campaign published before this moment is known before any
	// interaction of this batch is processed.
	ends, err := r.adm.ListCommittedOffsets(ctx, r.names.Campaigns)
	if err != nil {
		return fmt.Errorf("list campaign end offsets: %w", err)
	}
	endOffsets := map[int32]int64{}
	ends.Each(func(o kadm.ListedOffset) {
		if o.Err == nil && o.Partition >= 0 {
			endOffsets[o.Partition] = o.Offset
		}
	})
	if len(endOffsets) != r.ncamp {
		return fmt.Errorf("list campaign end offsets: got %d of %d partitions", len(endOffsets), r.ncamp)
	}
	waitCtx, cancel := context.WithTimeout(ctx, 30*time.Second)
	err = r.env.campaign.waitFor(waitCtx, endOffsets)
	cancel()
	if err != nil {
		return fmt.Errorf("read campaigns up to %v: %w", endOffsets, err)
	}

	if time.Since(r.lastLagReport) >= lagEvery {
		if err := r.reportLag(ctx); err != nil {
			r.log.Warn("lag check", "err", err)
		}
	}
	wall := policy.ToMillis(r.cfg.Now())
	tasks := r.sortedTasks()
	done := make([]int, len(tasks))
	err = eachTask(tasks, func(i int, t *task) error {
		t.begin(wall)
		if err := t.syncCampaigns(endOffsets, r.ncamp); err != nil {
			return err
		}
		n, err := t.process(byPart[t.p])
		if err != nil {
			return err
		}
		done[i] = n
		return t.expire(sweepPerTxn)
	})
	if err != nil {
		return err
	}
	var needLag []*task
	for i, t := range tasks {
		if recs := byPart[t.p]; done[i] < len(recs) {
			// A fan-out used the budget: fetch the rest again later.
			r.sess.Client().SetOffsets(map[string]map[int32]kgo.EpochOffset{
				r.names.Interactions: {t.p: {Epoch: -1, Offset: recs[done[i]].Offset}},
			})
		} else if t.part.DueByWallClock(wall) {
			needLag = append(needLag, t)
		}
	}
	if len(needLag) > 0 {
		if err := r.fireCaughtUp(ctx, needLag, wall); err != nil {
			return err
		}
	}
	return eachTask(tasks, func(_ int, t *task) error { return t.finish() })
}

// eachTask runs fn for every task, each on its own goroutine, and returns
// the error of the first task (in ts's order) that failed. Tasks share
// nothing they change: each has its own batch, outputs and counts, and
// what they share (env: the serde, the campaign reader, the store) is safe
// for concurrent use. Run one after the other on the loop goroutine, they
// used one core of two: measured 160k-169k -> 198k-204k interactions/s
// (docs/performance.md, eighth round).
func eachTask(ts []*task, fn func(i int, t *task) error) error {
	if len(ts) == 1 {
		return fn(0, ts[0])
	}
	errs := make([]error, len(ts))
	var wg sync.WaitGroup
	for i, t := range ts {
		wg.Go(func() { errs[i] = fn(i, t) })
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}

// lagEvery is how often the runner measures its lag for /metrics.
const lagEvery = 2 * time.Second

// reportLag measures each owned partition's lag (its last stable offset
// minus the task's next offset) and, for the interactions and each output
// written with them (inbox, changelog, decisions: the same partitions), how
// far the LSO is behind the high watermark and since when it has not moved
// (Stats.Stable). Two list requests per check, every lagEvery, however
// many transactions run meanwhile.
func (r *Runner) reportLag(ctx context.Context) error {
	r.lastLagReport = time.Now()
	watched := []string{r.names.Interactions, r.names.Inbox, r.names.Changelog}
	if r.names.Decisions != "" {
		watched = append(watched, r.names.Decisions)
	}
	ends, err := r.adm.ListCommittedOffsets(ctx, watched...)
	if err != nil {
		return fmt.Errorf("list end offsets (last stable): %w", err)
	}
	lag := make(map[int32]int64, len(r.tasks))
	for p, t := range r.tasks {
		if o, ok := ends.Lookup(r.names.Interactions, p); ok && o.Err == nil {
			lag[p] = max(0, o.Offset-max(t.part.Input(), 0))
		}
	}
	r.stats.setLag(lag)

	highs, err := r.adm.ListEndOffsets(ctx, watched...)
	if err != nil {
		return fmt.Errorf("list high watermarks: %w", err)
	}
	lso, hwm := map[stableKey]int64{}, map[stableKey]int64{}
	for _, topic := range watched {
		for p := range r.tasks {
			k := stableKey{topic, p}
			if o, ok := ends.Lookup(topic, p); ok && o.Err == nil {
				lso[k] = o.Offset
			}
			if o, ok := highs.Lookup(topic, p); ok && o.Err == nil {
				hwm[k] = o.Offset
			}
		}
	}
	// The wall clock, not cfg.Now (a test may fix that for the rules):
	// this measures how long readers have been held back.
	r.stats.setStable(r.stable.observe(r.lastLagReport, lso, hwm))
	return nil
}

// fireCaughtUp fires, by the wall clock, the due campaigns of the tasks that
// have no lag on their partition.
func (r *Runner) fireCaughtUp(ctx context.Context, ts []*task, wall policy.Millis) error {
	if time.Since(r.lastLagCheck) >= r.cfg.Tick || r.lso == nil {
		ends, err := r.adm.ListCommittedOffsets(ctx, r.names.Interactions)
		if err != nil {
			return fmt.Errorf("list interactions end offsets: %w", err)
		}
		r.lso = map[int32]int64{}
		ends.Each(func(o kadm.ListedOffset) {
			if o.Err == nil {
				r.lso[o.Partition] = o.Offset
			}
		})
		r.lastLagCheck = time.Now()
	}
	for _, t := range ts {
		end, ok := r.lso[t.p]
		if in := t.part.Input(); !ok || in < end && !(in < 0 && end == 0) {
			continue
		}
		if err := t.fireByWallClock(wall); err != nil {
			return err
		}
	}
	return nil
}

// reset drops every task's staged work after an aborted transaction and
// puts each partition's fetch position back to what its state processed. It
// returns the tasks that could not reload their state (the instance must
// stop then).
func (r *Runner) reset() error {
	set := map[int32]kgo.EpochOffset{}
	var errs []error
	for _, t := range r.tasks {
		if err := t.load(); err != nil {
			errs = append(errs, fmt.Errorf("reload task %d: %w", t.p, err))
			continue
		}
		if in := t.part.Input(); in >= 0 {
			set[t.p] = kgo.EpochOffset{Epoch: -1, Offset: in}
		}
	}
	if len(set) > 0 {
		r.sess.Client().SetOffsets(map[string]map[int32]kgo.EpochOffset{r.names.Interactions: set})
	}
	r.syncPauses()
	return errors.Join(errs...)
}

// syncPauses pauses fetching for the partitions whose task is in the middle
// of a fan-out (their interactions wait) and resumes the others.
func (r *Runner) syncPauses() {
	var pause, resume []int32
	for _, t := range r.tasks {
		if t.part.FanningOut() {
			pause = append(pause, t.p)
		} else {
			resume = append(resume, t.p)
		}
	}
	cl := r.sess.Client()
	if len(pause) > 0 {
		cl.PauseFetchPartitions(map[string][]int32{r.names.Interactions: pause})
	}
	if len(resume) > 0 {
		cl.ResumeFetchPartitions(map[string][]int32{r.names.Interactions: resume})
	}
}

// fanningOut reports whether a task has a fan-out in progress.
func (r *Runner) fanningOut() bool {
	for _, t := range r.tasks {
		if t.part.FanningOut() {
			return true
		}
	}
	return false
}

// campaignFiring is a campaign whose fan-out finished on some of the
// instance's partitions: their partitions and totals so far.
type campaignFiring struct {
	partitions            []int32
	candidates, delivered int64
	start                 time.Time
}

// campaignsFired adds the fan-outs tasks finished in a committed
// transaction to the campaigns firing on the instance.
func (r *Runner) campaignsFired(done []finishedFanout) {
	for _, f := range done {
		if r.firing == nil {
			r.firing = map[string]*campaignFiring{}
		}
		c := r.firing[f.campaign]
		if c == nil {
			c = &campaignFiring{start: f.start}
			r.firing[f.campaign] = c
		}
		c.partitions = append(c.partitions, f.partition)
		c.candidates += f.candidates
		c.delivered += f.delivered
		if f.start.Before(c.start) {
			c.start = f.start
		}
	}
}

// campaignsDone logs once, and counts once, each campaign whose fan-out has
// finished on every partition the instance owns (or that it no longer
// fires anywhere here, its other partitions gone in a rebalance), with its
// partitions and totals: one line per campaign and instance, not one per
// partition.
func (r *Runner) campaignsDone() {
	for id, c := range r.firing {
		busy := false
		for _, t := range r.tasks {
			if p := t.part.Campaign(id); p != nil && !p.Status.Done() {
				busy = true
				break
			}
		}
		if busy {
			continue
		}
		slices.Sort(c.partitions)
		r.log.Info("campaign fired", "campaign", id, "partitions", c.partitions, "decided", c.candidates,
			"delivered", c.delivered, "took", time.Since(c.start).Round(time.Millisecond))
		r.stats.Campaigns.Add(1)
		delete(r.firing, id)
	}
}

// fanoutProgress publishes the fan-outs in progress on the instance's tasks
// (Stats.Fanouts), summed by campaign.
func (r *Runner) fanoutProgress() {
	var fs []FanoutProgress
	at := map[string]int{}
	for _, t := range r.tasks {
		for id, f := range t.fanouts() {
			i, ok := at[id]
			if !ok {
				i = len(fs)
				at[id] = i
				fs = append(fs, FanoutProgress{Campaign: id, Business: f.business, Started: f.start})
			}
			p := &fs[i]
			p.Partitions++
			p.Contacts += max(f.contacts, 0)
			p.Visited += f.visited
			p.Decided += f.candidates
			if f.start.Before(p.Started) {
				p.Started = f.start
			}
		}
	}
	if len(fs) > 0 || len(r.stats.Fanouts()) > 0 {
		r.stats.setFanouts(fs)
	}
}
