package pipeline

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sponsored/sponsor/state"
	"github.com/sponsored/sponsor/topics"
)

// handover passes partitions between the group and the loop: the group's
// callbacks restore each assigned partition's task before any of its
// records is fetched, and hand it over; the loop adopts it, and drops the
// tasks of the partitions revoked.
//
// Concurrency: franz-go calls onAssigned, onRevoked and adjustOffsets on
// goroutines of its own; the loop goroutine takes what they hand over in
// adopt. mu guards incoming, revoked and restoreErr; joined and
// restoring are read by the loop without it. Run calls reset while the loop
// is not running and the session is closed.
type handover struct {
	cfg   *Config
	log   *slog.Logger
	stats *Stats
	names topics.Names
	txnID string // the instance's own transactional id, never fenced
	adm   *kadm.Client
	env   *env
	base  []kgo.Opt    // seed brokers and the user's options, for the restore consumers
	ready *atomic.Bool // the Runner's: not ready while a restore runs
	// standbys, if not nil, follows partitions as a standby: a partition
	// is claimed from it before its restore (Config.StandbyReplicas).
	standbys *standbys

	// restoring counts restores in progress (the instance is not ready).
	restoring atomic.Int32
	// joined is set once the group gave the instance its first assignment
	// (possibly empty): before that it is not ready.
	joined atomic.Bool

	mu         sync.Mutex
	incoming   map[int32]*task
	revoked    map[int32]bool
	restoreErr error // a failed restore: the loop stops the instance
}

func (h *handover) onAssigned(ctx context.Context, _ *kgo.Client, assigned map[string][]int32) {
	h.log.Info("partitions assigned", "partitions", assigned[h.names.Interactions])
	// Before the offsets are fetched (stable: they would wait for a dead
	// instance's open transaction) and the tasks restored.
	h.fenceDead(ctx, assigned[h.names.Interactions])
	h.joined.Store(true)
}

func (h *handover) onRevoked(_ context.Context, _ *kgo.Client, revoked map[string][]int32) {
	ps := revoked[h.names.Interactions]
	h.log.Info("partitions revoked", "partitions", ps)
	h.mu.Lock()
	for _, p := range ps {
		h.revoked[p] = true
		delete(h.incoming, p)
	}
	h.mu.Unlock()
}

// adjustOffsets runs when partitions are assigned, before any record of
// theirs is fetched: it restores each new task from the changelog and starts
// fetching at the offset the restored state has processed up to.
func (h *handover) adjustOffsets(ctx context.Context, offsets map[string]map[int32]kgo.Offset) (map[string]map[int32]kgo.Offset, error) {
	parts := offsets[h.names.Interactions]
	if len(parts) == 0 {
		return offsets, nil
	}
	h.restoring.Add(1)
	h.ready.Store(false)
	defer h.restoring.Add(-1)
	// The committed offsets (fetched stable: no transaction pending on
	// them), to check the restored state is not behind them.
	committed := map[int32]int64{}
	for p, o := range parts {
		if eo := o.EpochOffset(); eo.Offset >= 0 {
			committed[p] = eo.Offset
		}
	}
	ps := slices.Sorted(maps.Keys(parts))
	var tasksMu sync.Mutex
	tasks := make(map[int32]*task, len(ps))
	var promoted map[int32]promotion
	if h.standbys != nil {
		// Its follower stops first: the restore continues from the
		// checkpoint it flushed, and the range has one writer.
		promoted = h.standbys.claim(ps)
	}
	h.stats.RestoringPartitions.Add(int64(len(parts)))
	results := RestorePartitions(ctx, h.adm, h.env.store, h.names.Changelog, ps, RestoreOptions{
		Kafka:         h.base,
		Parallelism:   DefaultRestoreParallelism,
		Committed:     committed,
		SkipChangelog: h.cfg.UnsafeNoTransactions,
		Progress:      h.stats.restoreProgress,
		Loaded: func(p int32) error {
			t, err := newTaskFilter(ctx, p, h.env, h.standbyFilter(p, promoted[p]))
			if err != nil {
				return err
			}
			tasksMu.Lock()
			tasks[p] = t
			tasksMu.Unlock()
			return nil
		},
		Ended: func(p int32, restored time.Duration) {
			h.stats.restoreEnded(p, restored)
			h.stats.RestoringPartitions.Add(-1)
		},
		Log: h.log,
	})
	if err := ctx.Err(); err != nil {
		// The session began revoking (a new rebalance) during the
		// restore. Hand nothing over and return the error: franz-go then
		// keeps these partitions among those whose offsets it still has
		// to fetch, and runs this function for them again in the next
		// session if this member keeps them (cooperative rebalancing);
		// if they move, their next owner restores them. Returning the
		// offsets instead would have them consumed with no task: a
		// partition kept across the rebalance then stalled for good
		// (TestBrokerKill saw it: the restore of p0 interrupted, p0
		// kept, never processed again).
		h.log.Info("restore interrupted by a rebalance; the partitions are restored again if they stay", "partitions", ps, "err", err)
		return nil, fmt.Errorf("restore interrupted by a rebalance: %w", err)
	}
	out := offsets[h.names.Interactions]
	var errs []error
	for _, res := range results {
		if res.Err != nil {
			errs = append(errs, fmt.Errorf("restore partition %d: %w", res.Partition, res.Err))
			continue
		}
		t := tasks[res.Partition]
		h.stats.RestoredRecords.Add(res.Records)
		rate := 0.0
		if s := res.Took.Seconds(); s > 0 {
			rate = float64(res.Records) / s
		}
		h.log.Info("task restored", "partition", res.Partition, "changelog_records", res.Records, "took", res.Took.Round(time.Millisecond),
			"records_per_sec", int64(rate), "input_offset", t.part.Input(), "campaigns", t.part.Campaigns(),
			"contacts", t.contacts.Keys(), "contact_filter_bytes", t.contacts.Bytes())
		if pr := promoted[res.Partition]; pr.followed {
			h.stats.StandbyPromotions.Add(1)
			h.log.Info("standby promoted", "partition", res.Partition, "standby_checkpoint", pr.next, "standby_applied_records", pr.applied,
				"changelog_records", res.Records, "changelog_from", res.From, "changelog_end", res.End, "took", res.Took.Round(time.Millisecond),
				"standby_contact_filter", pr.contacts != nil && t.contacts == pr.contacts)
		}
		if in := t.part.Input(); in >= 0 && !h.cfg.UnsafeNoTransactions {
			out[res.Partition] = kgo.NewOffset().At(in).WithEpoch(-1)
		}
		h.mu.Lock()
		h.incoming[res.Partition] = t
		delete(h.revoked, res.Partition)
		h.mu.Unlock()
	}
	if len(errs) > 0 {
		// Returning an error would leave the partitions unconsumed; the
		// loop sees the failure and stops the instance so the group moves
		// them elsewhere.
		err := errors.Join(errs...)
		h.log.Error("restore failed", "err", err)
		h.mu.Lock()
		h.restoreErr = err
		h.mu.Unlock()
	}
	return offsets, nil
}

// standbyFilter returns the contact filter the standby of partition p
// kept, when the state the restore left is the one it was kept for (the
// restore applied nothing after the standby's checkpoint); nil otherwise,
// and the task builds its own.
func (h *handover) standbyFilter(p int32, pr promotion) *state.ContactFilter {
	if pr.contacts == nil {
		return nil
	}
	if cp, err := h.env.store.Checkpoint(p); err != nil || cp != pr.next {
		return nil
	}
	return pr.contacts
}

// reset forgets everything handed over and not taken, and the join: the
// session it came from is closed.
func (h *handover) reset() {
	h.mu.Lock()
	clear(h.incoming)
	clear(h.revoked)
	h.restoreErr = nil
	h.mu.Unlock()
	h.joined.Store(false)
}

// adopt takes the tasks the group callbacks handed over. It runs on the
// loop goroutine, which owns l.tasks.
func (l *txnLoop) adopt() error {
	h := l.hand
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.restoreErr != nil {
		return fmt.Errorf("%w: %w", errStop, h.restoreErr)
	}
	changed := len(h.revoked) > 0 || len(h.incoming) > 0
	for p := range h.revoked {
		if t, ok := l.tasks[p]; ok {
			t.discard()
			delete(l.tasks, p)
			l.env.campaign.release(t)
		}
		delete(h.revoked, p)
		if h.standbys != nil {
			h.standbys.release([]int32{p}) // no task writes its range any more
		}
	}
	adopted := len(h.incoming) > 0
	for p, t := range h.incoming {
		l.tasks[p] = t
		delete(h.incoming, p)
	}
	if adopted {
		// The client keeps a partition's pause across rebalances: one
		// paused during a fan-out of an earlier owner's task (this
		// instance's, before it lost the partition) would stay paused,
		// and with no record, no iteration would ever resume it
		// (TestZombieFenced once stalled so in CI).
		l.syncPauses()
	}
	l.stats.TasksAssigned.Store(int64(len(l.tasks)))
	if changed || l.owned.Load() == nil {
		owned := slices.Sorted(maps.Keys(l.tasks))
		l.owned.Store(&owned)
	}
	if len(l.tasks) == 0 {
		l.lag.clear() // iterations do not run without tasks
	}
	l.ready.Store(h.joined.Load() && h.restoring.Load() == 0 && len(h.incoming) == 0)
	return nil
}
