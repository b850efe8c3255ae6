package pipeline

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sponsored/sponsor/policy"
	"github.com/sponsored/sponsor/topics"
)

// sweepPerTxn is how many contacts a task checks for expiry per transaction.
const sweepPerTxn = 256

// txnLoop is the instance's processing loop: poll, process every task in
// one transaction, commit, apply the state, repeat (transaction.go holds
// the transaction's steps).
//
// Concurrency: run and every method of txnLoop run on one goroutine, the
// loop goroutine (Run's, while it is in run; Run calls drop once run has
// returned). It owns tasks and everything of theirs; within a transaction
// it runs each task's part on a goroutine of its own (eachTask) and waits
// for them all. What other goroutines read, it publishes through atomics:
// ready, owned and the Stats.
type txnLoop struct {
	cfg            *Config
	log            *slog.Logger
	stats          *Stats
	names          topics.Names
	ncamp          int      // campaigns partitions
	interactionsID [16]byte // topic id, for offset commits
	adm            *kadm.Client
	env            *env
	hand           *handover
	ready          *atomic.Bool             // the Runner's
	owned          *atomic.Pointer[[]int32] // the partitions of the tasks owned, sorted, for the HTTP handlers

	lag     lagMonitor
	fanouts fanoutReport

	sess  session // the session of the current run
	tasks map[int32]*task
}

// run is one session's loop: it returns when ctx ends (nil), or with the
// error that ends the session (isFatal).
func (l *txnLoop) run(ctx context.Context, sess session) error {
	l.sess = sess
	var failures int
	for {
		if ctx.Err() != nil {
			return nil
		}
		fs := l.poll(ctx)
		if fs.IsClientClosed() {
			return errors.New("kafka client closed")
		}
		fetchErr := l.fetchError(fs)
		if err := l.adopt(); err != nil {
			l.sess.AllowRebalance()
			return err
		}
		// A shutdown lets the iteration in flight finish and commit.
		iterCtx, cancelIter := context.WithTimeout(context.WithoutCancel(ctx), l.cfg.TransactionTimeout)
		err := markUnusable(l.iteration(iterCtx, fs))
		cancelIter()
		l.sess.AllowRebalance()
		switch {
		case err == nil:
			failures = 0
		case isFatal(err):
			return err
		default:
			failures++
			l.log.Warn("transaction failed; retrying from the last commit", "err", err, "failures", failures)
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

// poll waits for the next records, for Config.Tick (a millisecond while a
// fan-out goes on).
func (l *txnLoop) poll(ctx context.Context) kgo.Fetches {
	wait := l.cfg.Tick
	if l.fanningOut() {
		wait = time.Millisecond // the fan-out goes on at once
	}
	pollCtx, cancel := context.WithTimeout(ctx, wait)
	// A campaign that arrives ends the wait: if it is due, it fires
	// now rather than at the next Tick.
	polled := make(chan struct{})
	go func() {
		select {
		case <-l.env.campaign.arrived:
			select {
			case <-polled: // too late for this poll: keep it for the next
				l.env.campaign.wake()
			default:
				cancel()
			}
		case <-polled:
		}
	}()
	fs := l.sess.PollRecords(pollCtx, l.cfg.MaxPollRecords)
	close(polled)
	cancel()
	return fs
}

// fetchError logs the fetch errors of fs, other than the end of the poll's
// wait, and returns the last of them.
func (l *txnLoop) fetchError(fs kgo.Fetches) error {
	var fetchErr error
	fs.EachError(func(t string, p int32, err error) {
		if !errors.Is(err, context.DeadlineExceeded) && !errors.Is(err, context.Canceled) {
			l.log.Warn("fetch error", "topic", t, "partition", p, "err", err)
			fetchErr = err
		}
	})
	return fetchErr
}

// drop drops every task once the session is closed: their state in Pebble
// is what their last committed transaction left.
func (l *txnLoop) drop() {
	for p, t := range l.tasks {
		t.discard()
		delete(l.tasks, p)
		l.env.campaign.release(t)
	}
	l.owned.Store(nil)
	l.stats.TasksAssigned.Store(0)
	l.stats.setLag(nil)
	if l.hand.standbys != nil {
		l.hand.standbys.release(nil) // the session is closed: no task, no restore
	}
}

func (l *txnLoop) sortedTasks() []*task {
	ts := make([]*task, 0, len(l.tasks))
	for _, t := range l.tasks {
		ts = append(ts, t)
	}
	slices.SortFunc(ts, func(a, b *task) int { return int(a.p - b.p) })
	return ts
}

// work does every task's part of the transaction.
func (l *txnLoop) work(ctx context.Context, byPart map[int32][]*kgo.Record) error {
	endOffsets, err := l.syncCampaigns(ctx)
	if err != nil {
		return err
	}
	if l.lag.due() {
		if err := l.lag.report(ctx, l.tasks); err != nil {
			l.log.Warn("lag check", "err", err)
		}
	}
	wall := policy.ToMillis(l.cfg.Now())
	tasks := l.sortedTasks()
	remembered := 0
	for _, t := range tasks {
		remembered += t.part.Campaigns()
	}
	l.stats.CampaignsRemembered.Store(int64(remembered))
	l.stats.CampaignRecordsHeld.Store(int64(l.env.campaign.held()))
	needLag, err := l.process(tasks, byPart, endOffsets, wall)
	if err != nil {
		return err
	}
	if len(needLag) > 0 {
		if err := l.fireCaughtUp(ctx, needLag, wall); err != nil {
			return err
		}
	}
	return eachTask(tasks, func(_ int, t *task) error { return t.finish() })
}

// syncCampaigns waits until the broadcast reader has read the campaigns
// topic up to its end offsets of this moment, and returns them: every
// campaign published before this moment is known before any interaction
// of this batch is processed.
func (l *txnLoop) syncCampaigns(ctx context.Context) (map[int32]int64, error) {
	ends, err := l.adm.ListCommittedOffsets(ctx, l.names.Campaigns)
	if err != nil {
		return nil, fmt.Errorf("list campaign end offsets: %w", err)
	}
	endOffsets := map[int32]int64{}
	ends.Each(func(o kadm.ListedOffset) {
		if o.Err == nil && o.Partition >= 0 {
			endOffsets[o.Partition] = o.Offset
		}
	})
	if len(endOffsets) != l.ncamp {
		return nil, fmt.Errorf("list campaign end offsets: got %d of %d partitions", len(endOffsets), l.ncamp)
	}
	waitCtx, cancel := context.WithTimeout(ctx, 30*time.Second)
	err = l.env.campaign.waitFor(waitCtx, endOffsets)
	cancel()
	if err != nil {
		return nil, fmt.Errorf("read campaigns up to %v: %w", endOffsets, err)
	}
	return endOffsets, nil
}

// process has every task take the campaigns up to endOffsets, process its
// records of byPart and sweep for expiry. A task that held an interaction
// for its fan-outs (policy.Partition.Held) fetches the rest of its records
// again later; it returns the others that may fire a campaign by the wall
// clock (one is due, fan-outs in progress or not), if their partition has
// no lag.
func (l *txnLoop) process(tasks []*task, byPart map[int32][]*kgo.Record, endOffsets map[int32]int64, wall policy.Millis) ([]*task, error) {
	done := make([]int, len(tasks))
	err := eachTask(tasks, func(i int, t *task) error {
		t.begin(wall)
		if err := t.syncCampaigns(endOffsets, l.ncamp); err != nil {
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
		return nil, err
	}
	var needLag []*task
	for i, t := range tasks {
		if recs := byPart[t.p]; done[i] < len(recs) {
			// Held for the fan-outs: fetch the rest again later.
			l.sess.Client().SetOffsets(map[string]map[int32]kgo.EpochOffset{
				l.names.Interactions: {t.p: {Epoch: -1, Offset: recs[done[i]].Offset}},
			})
		} else if t.part.DueByWallClock(wall) {
			needLag = append(needLag, t)
		}
	}
	return needLag, nil
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

// fireCaughtUp fires, by the wall clock, the due campaigns of the tasks that
// have no lag on their partition.
func (l *txnLoop) fireCaughtUp(ctx context.Context, ts []*task, wall policy.Millis) error {
	lso, err := l.lag.interactionsLSO(ctx, l.cfg.Tick)
	if err != nil {
		return err
	}
	for _, t := range ts {
		end, ok := lso[t.p]
		if in := t.part.Input(); !ok || in < end && !(in < 0 && end == 0) {
			continue
		}
		if err := t.fireByWallClock(wall); err != nil {
			return err
		}
	}
	return nil
}

// syncPauses pauses fetching for the partitions whose task holds an
// interaction until its fan-outs end (policy.Partition.Held: their
// interactions wait at it) and resumes the others. A partition fanning
// out is fetched as usual: its interactions flow beside the fan-outs.
func (l *txnLoop) syncPauses() {
	var pause, resume []int32
	for _, t := range l.tasks {
		if t.part.Held() {
			pause = append(pause, t.p)
		} else {
			resume = append(resume, t.p)
		}
	}
	cl := l.sess.Client()
	if len(pause) > 0 {
		cl.PauseFetchPartitions(map[string][]int32{l.names.Interactions: pause})
	}
	if len(resume) > 0 {
		cl.ResumeFetchPartitions(map[string][]int32{l.names.Interactions: resume})
	}
}

// fanningOut reports whether a task has a fan-out in progress.
func (l *txnLoop) fanningOut() bool {
	for _, t := range l.tasks {
		if t.part.FanningOut() {
			return true
		}
	}
	return false
}
