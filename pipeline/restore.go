package pipeline

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sponsored/sponsor/kafkaconn"
	"github.com/sponsored/sponsor/policy"
	"github.com/sponsored/sponsor/state"
)

// restoreFlushEvery is how many changelog records go into one Pebble batch
// while restoring.
const restoreFlushEvery = 20000

// restoreIngestMin is the number of changelog offsets from which a restore
// builds sorted tables and ingests them (state.Ingester) rather than
// writing batches through the memtable (state.Restorer): a lost or stale
// state folder, or a gap that large. Below it the batches cost less than
// sorting and writing tables. A variable for tests.
var restoreIngestMin int64 = 100_000

// slowRestoreWait is how long a restore waits (for a transaction to end,
// for offsets, for its state to catch up with the group) before it logs
// what it is waiting for.
const slowRestoreWait = 3 * time.Second

// RestoreProgress is where the restore of one changelog partition stands.
type RestoreProgress struct {
	Partition int32
	// From is the offset the restore started at, End the one it reads to
	// (the changelog's end once no transaction is open on it), Next the
	// next offset to read.
	From, Next, End int64
	// Records is the number of changelog records applied so far (control
	// records and offsets removed by compaction are not records).
	Records int64
}

// Restore brings partition p's state in the store up to the end of its
// changelog partition: from the store's checkpoint when it has one the
// changelog still holds, from the start otherwise (a lost or stale state
// folder). A restore of restoreIngestMin offsets or more sorts the records
// and ingests them into the store as tables (state.Ingester), the
// checkpoint with them, once it has read them all; a shorter one writes
// batches (state.Restorer), each with its checkpoint. It waits until no
// transaction is open on the partition (its last stable offset equals its
// high watermark), then reads to that end.
// opts are the Kafka client options (seed brokers, security). progress, if
// not nil, is called once the range to read is known and after each fetch.
// It returns the number of changelog records applied. A wait longer than
// slowRestoreWait (an open transaction, offsets unavailable) is logged on
// log, with its reason; log may be nil.
func Restore(ctx context.Context, adm *kadm.Client, store *state.Store, changelog string, p int32, opts []kgo.Opt, progress func(RestoreProgress), log *slog.Logger) (int64, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	start, end, err := settledEnd(ctx, adm, changelog, p, log)
	if err != nil {
		return 0, err
	}
	from, err := store.Checkpoint(p)
	if err != nil {
		return 0, err
	}
	// Nothing usable: the changelog was truncated past our checkpoint, or
	// it is younger than our state (a recreated topic). Rebuild.
	rebuild := !checkpointUsable(from, start, end)
	if rebuild {
		from = start
	}
	ingest := end-from >= restoreIngestMin
	if rebuild && !ingest { // an Ingester from the start replaces the partition's keys itself
		if err := store.DropPartition(p); err != nil {
			return 0, err
		}
	}
	if progress != nil {
		progress(RestoreProgress{Partition: p, From: from, Next: from, End: end})
	}
	if from >= end {
		return 0, nil
	}
	// add stages a record, flush writes what was staged up to next.
	var add func(key, value []byte) error
	var flush func(next int64) error
	if ingest {
		in := store.NewIngester(p, from == start)
		defer in.Close()
		add = in.Add
		flush = func(next int64) error {
			if next < end {
				return nil // nothing is written before the end
			}
			return in.Finish(ctx, next)
		}
	} else {
		rs := store.NewRestorer(p)
		defer rs.Close()
		add = rs.Add
		flush = func(next int64) error {
			if rs.Len() >= restoreFlushEvery || next >= end {
				return rs.Flush(next)
			}
			return nil
		}
	}
	var n int64
	rd := kafkaconn.Reader{
		Opts:   append(append([]kgo.Opt(nil), opts...), kgo.FetchMaxBytes(64<<20)),
		Topics: map[string][]int32{changelog: {p}},
		Starts: map[string]map[int32]int64{changelog: {p: from}},
		Ends:   map[string]map[int32]int64{changelog: {p: end}},
		// After each fetch: batches are flushed every restoreFlushEvery
		// records and at the end, an ingestion at the end, with the offset
		// the written state reflects.
		Progress: func(pos kafkaconn.Position) error {
			if err := flush(pos.Next); err != nil {
				return err
			}
			if progress != nil {
				progress(RestoreProgress{Partition: p, From: from, Next: pos.Next, End: end, Records: n})
			}
			return nil
		},
	}
	var aerr error
	err = rd.Read(ctx, func(r *kgo.Record) error {
		if aerr = add(r.Key, r.Value); aerr != nil {
			return aerr
		}
		n++
		return nil
	})
	switch {
	case aerr != nil:
		return n, fmt.Errorf("apply changelog %s/%d: %w", changelog, p, aerr)
	case ctx.Err() != nil:
		return n, ctx.Err()
	case err != nil:
		return n, fmt.Errorf("read changelog %s/%d: %w", changelog, p, err)
	}
	return n, nil
}

// restoreUntil restores partition p and, when the group has committed an
// offset beyond what the restored state has processed, keeps restoring until
// the state catches up: the previous owner's last transaction committed the
// offsets and the changelog records together, but its markers may reach the
// changelog a moment after the group's offsets are readable. progress, if
// not nil, is Restore's, for each pass.
//
// It does not wait when the changelog partition holds no record: no task
// of the group committed the offset then (a replay or an offset reset did,
// e.g. `sponsor replay --shadow NAME` before a shadow run's first start), and
// no record will come to bring the state up to it; the task starts empty at
// the committed offset.
func restoreUntil(ctx context.Context, adm *kadm.Client, store *state.Store, changelog string, p int32, committed int64, opts []kgo.Opt, progress func(RestoreProgress), log *slog.Logger) (int64, policy.Meta, error) {
	var total int64
	began := time.Now()
	deadline := began.Add(30 * time.Second)
	logged := false
	for {
		var last RestoreProgress
		n, err := Restore(ctx, adm, store, changelog, p, opts, func(rp RestoreProgress) {
			last = rp
			if progress != nil {
				progress(rp)
			}
		}, log)
		total += n
		if err != nil {
			return total, policy.Meta{}, err
		}
		meta, _, err := store.LoadTask(p)
		if err != nil {
			return total, meta, err
		}
		if committed < 0 || meta.Input >= committed {
			return total, meta, nil
		}
		if meta.Input < 0 && last.From >= last.End {
			msg, lvl := "changelog partition has no record: the task starts with an empty state at the group's committed offset (committed by a replay or an offset reset, not by a task)", slog.LevelInfo
			if last.End > 0 {
				// Records were there and are gone (deleted, or the
				// retention of a non-compacted changelog).
				msg, lvl = "changelog partition is empty but its offsets advanced (records deleted): the task starts with an empty state at the group's committed offset", slog.LevelWarn
			}
			log.Log(ctx, lvl, msg, "partition", p, "changelog", changelog, "changelog_start", last.From, "changelog_end", last.End, "committed", committed)
			return total, meta, nil
		}
		if time.Now().After(deadline) {
			log.Warn("restored state is behind the group's committed offset; starting at the state's offset", "partition", p,
				"state_input_offset", meta.Input, "committed", committed, "waited", time.Since(began).Round(time.Millisecond))
			return total, meta, nil
		}
		if !logged && time.Since(began) > slowRestoreWait {
			logged = true
			log.Info("restore waits for the changelog to reach the group's committed offset (the previous owner's last transaction)", "partition", p,
				"state_input_offset", meta.Input, "committed", committed, "changelog_end", last.End, "gives_up_in", time.Until(deadline).Round(time.Second))
		}
		select {
		case <-ctx.Done():
			return total, meta, ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// settledEnd returns the start and end offsets of changelog partition p once
// no transaction is open on it (its last stable offset equals its high
// watermark).
//
// Reading only up to the last stable offset is not enough: a previous
// owner that crashed in the middle of a transaction leaves it open (until
// its transactional id is reused or the transaction times out), which holds
// the last stable offset back, and a later owner's committed records above
// it would be missed. Waiting here costs nothing after a clean handover
// (rebalances wait for the transaction in flight) and at most the
// transaction timeout after a crash.
func settledEnd(ctx context.Context, adm *kadm.Client, changelog string, p int32, log *slog.Logger) (start, end int64, err error) {
	var unavailable time.Time // when the offsets were first unavailable
	began := time.Now()
	logged := false
	slow := func(msg string, args ...any) {
		if !logged && time.Since(began) > slowRestoreWait {
			logged = true
			log.Info(msg, append([]any{"partition", p, "changelog", changelog, "waiting", time.Since(began).Round(time.Millisecond)}, args...)...)
		}
	}
	// wait returns nil after a pause when err may pass (a broker down or
	// restarting, a changelog Ensure has just created that is not yet in
	// every broker's metadata), err once it lasted 30 s.
	wait := func(err error) error {
		if unavailable.IsZero() {
			unavailable = time.Now()
		}
		if time.Since(unavailable) > 30*time.Second {
			return err
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w: %w", err, ctx.Err())
		case <-time.After(100 * time.Millisecond):
			return nil
		}
	}
	for {
		starts, err := adm.ListStartOffsets(ctx, changelog)
		if err != nil {
			err = fmt.Errorf("list changelog start offsets: %w", err)
		}
		var stable, hwm kadm.ListedOffsets
		if err == nil {
			if stable, err = adm.ListCommittedOffsets(ctx, changelog); err != nil {
				err = fmt.Errorf("list changelog stable offsets: %w", err)
			}
		}
		if err == nil {
			if hwm, err = adm.ListEndOffsets(ctx, changelog); err != nil {
				err = fmt.Errorf("list changelog end offsets: %w", err)
			}
		}
		if err != nil {
			// A request to a broker that just died fails as a whole
			// ("unable to dial"): TestBrokerKill once stopped an instance
			// whose restore ran into one.
			if err := wait(err); err != nil {
				return 0, 0, err
			}
			continue
		}
		so, ok1 := starts.Lookup(changelog, p)
		lo, ok2 := stable.Lookup(changelog, p)
		ho, ok3 := hwm.Lookup(changelog, p)
		if !ok1 || !ok2 || !ok3 || so.Err != nil || lo.Err != nil || ho.Err != nil {
			err := fmt.Errorf("changelog %s partition %d: offsets unavailable (start %v, stable %v, end %v)", changelog, p, so.Err, lo.Err, ho.Err)
			slow("restore waits for the changelog's offsets", "err", err)
			if err := wait(err); err != nil {
				return 0, 0, err
			}
			continue
		}
		if lo.Offset >= ho.Offset {
			return so.Offset, lo.Offset, nil
		}
		slow("restore waits for a transaction open on the changelog to end (a crashed owner's ends when its transactional id is reused or its timeout passes)",
			"stable_offset", lo.Offset, "end", ho.Offset)
		select {
		case <-ctx.Done():
			return 0, 0, fmt.Errorf("changelog %s partition %d: a transaction is still open at offset %d (end %d): %w", changelog, p, lo.Offset, ho.Offset, ctx.Err())
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// checkpointUsable reports whether a restore can resume from checkpoint, the
// changelog offset a partition's state reflects, when the changelog
// partition holds offsets start to end: it cannot when the changelog was
// truncated past it, or is younger than the state (a recreated topic).
func checkpointUsable(checkpoint, start, end int64) bool {
	return checkpoint >= start && checkpoint <= end
}

// RestoreBacklog returns, for each partition of ps, how many changelog
// offsets its restore would read as of now: from the store's checkpoint,
// when Restore could resume from it, or from the changelog's start, to its
// end. A guess, for a progress bar: the restore itself reads to the end it
// finds once no transaction is open.
func RestoreBacklog(ctx context.Context, adm *kadm.Client, store *state.Store, changelog string, ps []int32) (map[int32]int64, error) {
	starts, err := adm.ListStartOffsets(ctx, changelog)
	if err != nil {
		return nil, fmt.Errorf("list start offsets of %s: %w", changelog, err)
	}
	ends, err := adm.ListEndOffsets(ctx, changelog)
	if err != nil {
		return nil, fmt.Errorf("list end offsets of %s: %w", changelog, err)
	}
	backlog := make(map[int32]int64, len(ps))
	for _, p := range ps {
		so, _ := starts.Lookup(changelog, p)
		eo, _ := ends.Lookup(changelog, p)
		from := so.Offset
		if cp, err := store.Checkpoint(p); err == nil && checkpointUsable(cp, so.Offset, eo.Offset) {
			from = cp
		}
		backlog[p] = max(eo.Offset-from, 0)
	}
	return backlog, nil
}

// DefaultRestoreParallelism is RestoreOptions.Parallelism's default.
const DefaultRestoreParallelism = 4

// RestoreOptions configure RestorePartitions. The zero value restores
// DefaultRestoreParallelism partitions at once to their changelog's end.
type RestoreOptions struct {
	// Kafka are the options of the changelog consumers (seed brokers,
	// security), as Restore's opts.
	Kafka []kgo.Opt
	// Parallelism is how many partitions are restored at once. Default
	// DefaultRestoreParallelism.
	Parallelism int
	// Committed is, per partition, the offset its consumer group committed
	// on the interactions: a partition in it is restored until its state
	// has processed up to that offset (the previous owner's last
	// transaction may reach the changelog a moment after its offsets).
	// Partitions not in it are restored to the changelog's end once.
	Committed map[int32]int64
	// SkipChangelog skips reading the changelog: the partitions keep the
	// state the store holds, and only Loaded runs
	// (Config.UnsafeNoTransactions, which writes no changelog).
	SkipChangelog bool
	// Progress, if not nil, is Restore's progress callback, for every
	// partition; it is called from several goroutines at once.
	Progress func(RestoreProgress)
	// Loaded, if not nil, is called on the partition's goroutine once its
	// restore succeeded, before its Took is measured; an error fails the
	// partition. The runner loads the partition's task in it, in parallel
	// with the other restores.
	Loaded func(p int32) error
	// Ended, if not nil, is called on the partition's goroutine when the
	// partition's restore ended, however it ended; restored is how long
	// reading the changelog took, 0 if it failed or was skipped.
	Ended func(p int32, restored time.Duration)
	// Log gets Restore's lines about long waits; nil discards them.
	Log *slog.Logger
}

// RestoredPartition is what RestorePartitions did for one partition.
type RestoredPartition struct {
	Partition int32
	// Records is the number of changelog records applied.
	Records int64
	// From and End are the changelog offsets the restore read from and to
	// (its last pass's, when it waited for a committed offset).
	From, End int64
	// Took is how long the partition's restore took, from when its turn
	// came (Parallelism) to the end of Loaded.
	Took time.Duration
	// Err is why the restore of the partition failed, nil if it did not.
	Err error
}

// RestorePartitions restores partitions ps of changelog into store,
// o.Parallelism at a time, each as Restore does (or, for a partition in
// o.Committed, until its state reaches the committed offset), and returns
// the result of each, in the order of ps. It returns when every restore
// has ended; a failed one does not stop the others, and the caller decides
// what a failure means. A ctx that ends makes the restores in flight fail
// with its error.
func RestorePartitions(ctx context.Context, adm *kadm.Client, store *state.Store, changelog string, ps []int32, o RestoreOptions) []RestoredPartition {
	parallel := o.Parallelism
	if parallel <= 0 {
		parallel = DefaultRestoreParallelism
	}
	log := o.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	results := make([]RestoredPartition, len(ps))
	sem := make(chan struct{}, parallel)
	var wg sync.WaitGroup
	for i, p := range ps {
		wg.Go(func() {
			var restored time.Duration // how long the restore took, once it succeeded
			if o.Ended != nil {
				defer func() { o.Ended(p, restored) }()
			}
			sem <- struct{}{}
			defer func() { <-sem }()
			res := &results[i]
			res.Partition = p
			start := time.Now()
			if !o.SkipChangelog {
				var last RestoreProgress
				progress := func(rp RestoreProgress) {
					last = rp
					if o.Progress != nil {
						o.Progress(rp)
					}
				}
				var err error
				if c, ok := o.Committed[p]; ok && c >= 0 {
					res.Records, _, err = restoreUntil(ctx, adm, store, changelog, p, c, o.Kafka, progress, log)
				} else {
					res.Records, err = Restore(ctx, adm, store, changelog, p, o.Kafka, progress, log)
				}
				res.From, res.End = last.From, last.End
				if err != nil {
					res.Err = err
					return
				}
				restored = max(time.Since(start), time.Nanosecond)
			}
			if o.Loaded != nil {
				if err := o.Loaded(p); err != nil {
					res.Err = err
					return
				}
			}
			res.Took = time.Since(start)
		})
	}
	wg.Wait()
	return results
}
