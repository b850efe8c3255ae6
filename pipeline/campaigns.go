package pipeline

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"

	"github.com/twmb/franz-go/pkg/kgo"
)

// broadcast reads the whole campaigns topic (read_committed, every partition,
// from the start) so that every task of the instance sees every campaign.
// Tasks keep their own progress (the next offset per campaigns partition) in
// their state; broadcast only holds the records, as read, and says how far
// it has read: each task decides what a record does (task.applyCampaign).
//
// Records are kept in memory for the life of the instance: campaigns are few
// next to interactions. (Trimming below the slowest task's progress is a
// possible refinement.)
type broadcast struct {
	cl  *kgo.Client
	log *slog.Logger

	mu    sync.Mutex
	cond  *sync.Cond
	parts map[int32][]*kgo.Record // by partition, ascending offsets, transaction markers included
	next  map[int32]int64         // next offset not yet read, per partition
	err   error                   // fatal read error

	// arrived has a value once campaign records came in since the loop
	// last took it: the loop's idle poll ends on it, so that a campaign
	// due at once fires now, not at the next Tick.
	arrived chan struct{}
}

func newBroadcast(topic string, log *slog.Logger, opts []kgo.Opt) (*broadcast, error) {
	opts = append(append([]kgo.Opt(nil), opts...),
		kgo.ConsumeTopics(topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		kgo.KeepControlRecords(), // markers move our position to the LSO
	)
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		return nil, fmt.Errorf("campaign reader: %w", err)
	}
	b := &broadcast{cl: cl, log: log, parts: map[int32][]*kgo.Record{}, next: map[int32]int64{}, arrived: make(chan struct{}, 1)}
	b.cond = sync.NewCond(&b.mu)
	return b, nil
}

// run reads until ctx ends or the client closes.
func (b *broadcast) run(ctx context.Context) {
	for {
		fs := b.cl.PollFetches(ctx)
		if fs.IsClientClosed() || ctx.Err() != nil {
			b.fail(errors.New("campaign reader stopped"))
			return
		}
		fs.EachError(func(t string, p int32, err error) {
			b.log.Warn("campaign reader fetch error", "topic", t, "partition", p, "err", err)
		})
		batch := fs.Records()
		b.mu.Lock()
		for _, r := range batch {
			p := r.Partition
			b.parts[p] = append(b.parts[p], r)
			b.next[p] = r.Offset + 1
		}
		b.cond.Broadcast()
		b.mu.Unlock()
		if slices.ContainsFunc(batch, func(r *kgo.Record) bool { return !r.Attrs.IsControl() }) {
			b.wake()
		}
	}
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
	stop := context.AfterFunc(ctx, func() {
		b.mu.Lock()
		b.cond.Broadcast()
		b.mu.Unlock()
	})
	defer stop()
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

// hold makes sure the reader holds, for task p, the records of each
// campaigns partition from the offsets from on.
func (b *broadcast) hold(ctx context.Context, p int32, from map[int32]int64) error {
	return nil // every record is kept from the start of the topic
}

func (b *broadcast) close() { b.cl.Close() }
