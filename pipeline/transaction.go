package pipeline

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/sponsored/sponsor/state"
)

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

// iteration runs one transaction over every task, in this order: begin,
// the tasks' work (campaigns, records, firing), produce their records,
// end the transaction with every task's offset (flush, TxnOffsetCommit,
// EndTxn), and only once it committed apply the tasks' Pebble batches with
// their checkpoints. A transaction that does not commit is aborted and the
// tasks go back to their committed state (reset).
func (l *txnLoop) iteration(ctx context.Context, fs kgo.Fetches) (err error) {
	byPart := l.byPartition(fs)
	if len(l.tasks) == 0 {
		return nil
	}
	if err := l.begin(ctx); err != nil {
		return err
	}
	committed := false
	defer func() {
		if committed {
			return
		}
		if rerr := l.reset(ctx); rerr != nil {
			// A task that cannot reload its committed state would go on
			// from the aborted one: stop, and let a restore rebuild it.
			err = errors.Join(err, fmt.Errorf("%w: reload the tasks after the transaction failed: %w", errStop, rerr))
		}
	}()
	var at txnTimes
	at.work = time.Now()
	out := newTxnOutputs(l.names.Changelog)
	l.attach(ctx, out)
	if err := l.work(ctx, byPart); err != nil {
		return l.abortWork(ctx, err, out)
	}

	at.produce = time.Now()
	tasks := l.sortedTasks()
	any := l.produce(ctx, tasks, out)
	if !any && len(byPart) == 0 {
		// Nothing consumed, nothing changed: end the empty transaction
		// without a round trip.
		committed = true
		return l.endEmpty(ctx, tasks)
	}
	if err := l.commit(ctx, tasks, out, &at); err != nil {
		return err
	}
	committed = true
	if any {
		ended := time.Now()
		l.stats.Transactions.Add(1)
		l.stats.observeCommit(ended.Sub(at.end))
		l.stats.observePhases(at.produce.Sub(at.work), at.end.Sub(at.produce), at.flushed.Sub(at.end), ended.Sub(at.flushed))
	}
	if l.log.Enabled(ctx, slog.LevelDebug) {
		var outs int
		for _, t := range tasks {
			outs += len(t.records())
		}
		l.log.Debug("transaction committed", "records_in", len(byPart), "records_out", outs, "tasks", len(tasks), "fanning_out", l.fanningOut())
	}
	return l.apply(tasks, out.lastChange)
}

// txnTimes are when the steps of one transaction began, for the phase
// histograms of Stats.
type txnTimes struct {
	work, produce, end, flushed time.Time
}

// byPartition groups the interactions of fs by partition.
func (l *txnLoop) byPartition(fs kgo.Fetches) map[int32][]*kgo.Record {
	byPart := map[int32][]*kgo.Record{}
	fs.EachRecord(func(rec *kgo.Record) {
		if rec.Topic == l.names.Interactions {
			byPart[rec.Partition] = append(byPart[rec.Partition], rec)
		}
	})
	return byPart
}

// begin begins the transaction.
func (l *txnLoop) begin(ctx context.Context) error {
	if err := l.sess.Begin(); err != nil {
		// A failed End can leave the client in the transaction (franz-go
		// returns before ending it when its flush fails, e.g. after the
		// process was paused past its deadline): end it and try again.
		if aerr := l.abortInFlight(ctx); aerr != nil {
			return aerr
		}
		if err := l.sess.Begin(); err != nil {
			// Not in a transaction any more, Begin fails only when
			// franz-go keeps a fatal error for the producer id (e.g.
			// INVALID_TXN_STATE after a fence it could not recover
			// from): retrying would fail the same way for ever.
			return fmt.Errorf("%w: begin transaction: %w", errProducerUnusable, err)
		}
	}
	return nil
}

// abortWork aborts the transaction after the tasks' work failed with err.
// The tasks may have handed records to the producer during their work
// (attach): the abort fails those the client still holds, and abortWork
// waits for every promise, since the tasks reuse their records next time.
func (l *txnLoop) abortWork(ctx context.Context, err error, out *txnOutputs) error {
	for _, t := range l.tasks {
		t.sink = nil
	}
	endCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), l.cfg.TransactionTimeout)
	defer cancel()
	if _, aerr := l.sess.End(endCtx, kgo.TryAbort); aerr != nil {
		return errors.Join(err, l.abortInFlight(ctx), out.wait(l.cfg.TransactionTimeout))
	}
	l.stats.Aborts.Add(1)
	return errors.Join(err, out.wait(l.cfg.TransactionTimeout))
}

// recordSink produces a task's records into the transaction in progress,
// from the task's goroutine while it works (task.send).
type recordSink struct {
	ctx  context.Context
	sess session
	out  *txnOutputs
}

func (s *recordSink) produce(recs []*kgo.Record) {
	promise := s.out.promise // one closure for all records, not one per record
	s.out.wg.Add(len(recs))
	for _, rec := range recs {
		s.sess.Produce(s.ctx, rec, promise)
	}
}

// attach gives every task the transaction's producer, so that each hands
// its records over while it works; produce hands over the rest.
func (l *txnLoop) attach(ctx context.Context, out *txnOutputs) {
	sink := &recordSink{ctx: ctx, sess: l.sess, out: out}
	for _, t := range l.tasks {
		t.sink = sink
	}
}

// produce produces the records every task has not handed over yet and
// detaches the tasks from the transaction's producer; it reports whether
// the transaction has any record.
func (l *txnLoop) produce(ctx context.Context, tasks []*task, out *txnOutputs) bool {
	sink := &recordSink{ctx: ctx, sess: l.sess, out: out}
	any := false
	for _, t := range tasks {
		t.sink = nil
		sink.produce(t.unsent())
		t.sent = len(t.out)
		any = any || len(t.records()) > 0
	}
	return any
}

// endEmpty ends a transaction in which nothing was consumed or produced.
func (l *txnLoop) endEmpty(ctx context.Context, tasks []*task) error {
	endCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), l.cfg.TransactionTimeout)
	defer cancel()
	for _, t := range tasks {
		t.discard()
	}
	if _, err := l.sess.End(endCtx, kgo.TryAbort); err != nil {
		return errors.Join(fmt.Errorf("end empty transaction: %w", err), l.abortInFlight(ctx))
	}
	return nil
}

// commit ends the transaction, committing it, once every record in out is
// written; it aborts it if one failed. It sets at.end and at.flushed.
func (l *txnLoop) commit(ctx context.Context, tasks []*task, out *txnOutputs, at *txnTimes) error {
	endCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), l.cfg.TransactionTimeout)
	defer cancel()
	// End flushes, commits the offsets and ends the transaction. The
	// offsets committed are each task's own next offset, for every task, so
	// the group's offsets always equal the state's, and every transaction
	// carries an offset commit: the group generation check in it fences a
	// zombie even in a transaction that only continues a fan-out.
	endCtx = kgo.PreTxnCommitFnContext(endCtx, func(req *kmsg.TxnOffsetCommitRequest) error {
		l.taskOffsets(req, tasks)
		return nil
	})
	at.end = time.Now()
	// franz-go commits what did get written even when a record of the
	// transaction failed for good (a non-retriable produce error such as
	// INVALID_RECORD fails only that record): flush, wait for every
	// record's promise, and abort if any record failed, or the offsets
	// would move past a delivery or a state change that is not in Kafka.
	if err := l.sess.Client().Flush(endCtx); err != nil {
		l.stats.Aborts.Add(1)
		return errors.Join(fmt.Errorf("flush transaction: %w", err), l.abortInFlight(ctx), out.wait(l.cfg.TransactionTimeout))
	}
	if err := out.wait(l.cfg.TransactionTimeout); err != nil {
		l.stats.Aborts.Add(1)
		return errors.Join(err, l.abortInFlight(ctx))
	}
	at.flushed = time.Now()
	if perr := out.failed(); perr != nil {
		l.stats.Aborts.Add(1)
		if aerr := l.abortInFlight(ctx); aerr != nil {
			return errors.Join(fmt.Errorf("produce: %w", perr), aerr)
		}
		return fmt.Errorf("produce failed; transaction aborted: %w", perr)
	}
	ok, err := l.sess.End(endCtx, kgo.TryCommit)
	if err != nil {
		l.stats.Aborts.Add(1)
		if aerr := l.abortInFlight(ctx); aerr != nil {
			return errors.Join(fmt.Errorf("end transaction: %w", err), aerr)
		}
		return fmt.Errorf("end transaction: %w", err)
	}
	if !ok {
		l.stats.Aborts.Add(1)
		return errors.New("transaction aborted (a rebalance revoked or lost partitions during it)")
	}
	return nil
}

// apply moves the state once the transaction is durable. Each task's batch
// is applied, with its checkpoint (the task's last changelog offset), on a
// goroutine of its own while the next transaction runs; the task's next
// batch reads through it until it is in Pebble. Then it reports the
// fan-outs and pauses or resumes the partitions.
func (l *txnLoop) apply(tasks []*task, lastChange map[int32]int64) error {
	for _, t := range tasks {
		next, changed := lastChange[t.p]
		ok, err := t.settle(next, changed)
		if err != nil {
			return fmt.Errorf("%w: apply committed state of partition %d: %w", errStop, t.p, err)
		}
		if !ok {
			continue
		}
		l.fanouts.fired(t.committed(l.stats))
	}
	l.fanouts.done(l.tasks)
	l.fanouts.progress(l.tasks)
	l.syncPauses()
	return nil
}

// txnOutputs follows the records of one transaction: it counts their
// promises, so that the loop knows when franz-go is done with every record
// (Flush waits only for the records it buffered; a record that fails before
// it is buffered, e.g. when its produce context expires while the client's
// buffer is full, has its promise run later on another goroutine), keeps
// the first failure, and each task's last changelog offset.
func newTxnOutputs(changelog string) *txnOutputs {
	return &txnOutputs{changelog: changelog, lastChange: map[int32]int64{}}
}

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
func (l *txnLoop) abortInFlight(ctx context.Context) error {
	actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), l.cfg.TransactionTimeout)
	defer cancel()
	if _, err := l.sess.End(actx, kgo.TryAbort); err != nil {
		return fmt.Errorf("%w: abort the transaction left open: %w", errStop, err)
	}
	return nil
}

// taskOffsets sets, in a transaction's offset commit, the interactions
// offset of every task to the task's next offset.
func (l *txnLoop) taskOffsets(req *kmsg.TxnOffsetCommitRequest, tasks []*task) {
	var rt *kmsg.TxnOffsetCommitRequestTopic
	for i := range req.Topics {
		if req.Topics[i].Topic == l.names.Interactions {
			rt = &req.Topics[i]
		}
	}
	if rt == nil {
		req.Topics = append(req.Topics, kmsg.NewTxnOffsetCommitRequestTopic())
		rt = &req.Topics[len(req.Topics)-1]
		rt.Topic, rt.TopicID = l.names.Interactions, l.interactionsID
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

// reset drops every task's staged work after an aborted transaction and
// puts each partition's fetch position back to what its state processed. It
// returns the tasks that could not reload their state (the instance must
// stop then).
func (l *txnLoop) reset(ctx context.Context) error {
	set := map[int32]kgo.EpochOffset{}
	var errs []error
	// The campaigns a task rebuilds from the topic are read again even
	// when the transaction failed because the session is ending.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	for _, t := range l.tasks {
		if err := t.load(ctx); err != nil {
			errs = append(errs, fmt.Errorf("reload task %d: %w", t.p, err))
			continue
		}
		if in := t.part.Input(); in >= 0 {
			set[t.p] = kgo.EpochOffset{Epoch: -1, Offset: in}
		}
	}
	if len(set) > 0 {
		l.sess.Client().SetOffsets(map[string]map[int32]kgo.EpochOffset{l.names.Interactions: set})
	}
	l.syncPauses()
	return errors.Join(errs...)
}
