package pipeline

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sponsored/sponsor/deadletter"
	"github.com/sponsored/sponsor/schemas"
	"github.com/sponsored/sponsor/schemas/wire"
)

// campaignRecord is one record of the campaigns topic as every task sees it:
// decoded, or with the reason it cannot be accepted.
type campaignRecord struct {
	rec      *kgo.Record
	control  bool              // a transaction marker: only advances the offset
	campaign *schemas.Campaign // nil when bad
	reason   deadletter.Reason // dead-letter reason when bad
	err      error             // the decode error when bad
}

// broadcast reads the whole campaigns topic (read_committed, every partition,
// from the start) so that every task of the instance sees every campaign.
// Tasks keep their own progress (the next offset per campaigns partition) in
// their state; broadcast only holds the records and says how far it has read.
//
// Records are kept in memory for the life of the instance: campaigns are few
// next to interactions. (Trimming below the slowest task's progress is a
// possible refinement.)
type broadcast struct {
	cl    *kgo.Client
	serde *wire.Serde
	log   *slog.Logger

	mu    sync.Mutex
	cond  *sync.Cond
	parts map[int32][]campaignRecord // by partition, ascending offsets
	next  map[int32]int64            // next offset not yet read, per partition
	err   error                      // fatal read error

	// arrived has a value once campaign records came in since the loop
	// last took it: the loop's idle poll ends on it, so that a campaign
	// due at once fires now, not at the next Tick.
	arrived chan struct{}
}

func newBroadcast(topic string, serde *wire.Serde, log *slog.Logger, opts []kgo.Opt) (*broadcast, error) {
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
	b := &broadcast{cl: cl, serde: serde, log: log, parts: map[int32][]campaignRecord{}, next: map[int32]int64{}, arrived: make(chan struct{}, 1)}
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
		var batch []campaignRecord
		fs.EachRecord(func(r *kgo.Record) {
			batch = append(batch, b.decode(r))
		})
		b.mu.Lock()
		for _, cr := range batch {
			p := cr.rec.Partition
			b.parts[p] = append(b.parts[p], cr)
			b.next[p] = cr.rec.Offset + 1
		}
		b.cond.Broadcast()
		b.mu.Unlock()
		if slices.ContainsFunc(batch, func(cr campaignRecord) bool { return !cr.control }) {
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

func (b *broadcast) decode(r *kgo.Record) campaignRecord {
	if r.Attrs.IsControl() {
		return campaignRecord{rec: r, control: true}
	}
	c, err := b.serde.DecodeCampaign(r.Value)
	if err != nil {
		var de *wire.DecodeError
		if errors.As(err, &de) {
			return campaignRecord{rec: r, reason: de.Reason, err: err}
		}
		// The registry did not answer: not the record's fault. Tasks
		// retry it through decodeAgain.
		return campaignRecord{rec: r, reason: reasonRetry, err: err}
	}
	switch {
	case c.CampaignID == "":
		return campaignRecord{rec: r, reason: deadletter.ReasonEmptyCampaignID, err: errors.New("campaign_id is empty")}
	case string(r.Key) != c.CampaignID:
		return campaignRecord{rec: r, reason: deadletter.ReasonMisroutedKey, err: fmt.Errorf("record key %q is not the campaign_id %q", r.Key, c.CampaignID)}
	case c.BusinessID == "":
		return campaignRecord{rec: r, reason: deadletter.ReasonEmptyBusinessID, err: errors.New("business_id is empty")}
	}
	return campaignRecord{rec: r, campaign: &c}
}

// reasonRetry marks a record whose decode failed for a reason outside the
// record (the registry); it is decoded again, never dead-lettered.
const reasonRetry deadletter.Reason = "retry"

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
func (b *broadcast) since(p int32, from, end int64) []campaignRecord {
	b.mu.Lock()
	defer b.mu.Unlock()
	recs := b.parts[p]
	// Offsets ascend; find the first at or after from.
	lo, hi := 0, len(recs)
	for lo < hi {
		m := (lo + hi) / 2
		if recs[m].rec.Offset < from {
			lo = m + 1
		} else {
			hi = m
		}
	}
	j := lo
	for j < len(recs) && recs[j].rec.Offset < end {
		j++
	}
	return recs[lo:j]
}

func (b *broadcast) close() { b.cl.Close() }
