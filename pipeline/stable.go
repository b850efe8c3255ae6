package pipeline

import (
	"cmp"
	"slices"
	"time"
)

// StableOffsets is, for one partition the instance owns (of the
// interactions topic or of an output written with it: inbox, changelog,
// decisions), how far its last stable offset (LSO) is behind its high
// watermark (HWM), as of the runner's last offset check.
//
// An open transaction holds the LSO at its first record: a read_committed
// consumer, the pipeline among them, reads nothing past it. A lag computed
// from the LSO (sponsor_lag_records) is then zero while nothing moves; this
// is what shows it.
type StableOffsets struct {
	Topic     string
	Partition int32
	// Behind is HWM - LSO, in records (transaction markers count): 0 when
	// no transaction is open on the partition.
	Behind int64
	// Stuck is how long the LSO has not moved while behind the HWM: 0
	// when it is at the HWM or moved at the last check. For a partition
	// first seen behind, it counts from that check (the runner does not
	// know when it stopped earlier).
	Stuck time.Duration
}

// stableKey names a topic partition.
type stableKey struct {
	topic     string
	partition int32
}

// stableWatch remembers, per partition, the LSO of the last check and
// since when it has been that value while behind the HWM. Owned by the
// loop goroutine.
type stableWatch struct {
	seen map[stableKey]stableSeen
}

type stableSeen struct {
	lso   int64
	since time.Time
}

// observe takes one check's offsets (LSO and HWM per partition, listed at
// now) and returns each partition listed in both, sorted by topic and
// partition. Partitions missing from this check are forgotten: one
// assigned again later starts afresh.
func (w *stableWatch) observe(now time.Time, lso, hwm map[stableKey]int64) []StableOffsets {
	seen := make(map[stableKey]stableSeen, len(hwm))
	out := make([]StableOffsets, 0, len(hwm))
	for k, high := range hwm {
		stable, ok := lso[k]
		if !ok {
			continue
		}
		behind := max(0, high-stable)
		s, known := w.seen[k]
		if !known || s.lso != stable || behind == 0 {
			s = stableSeen{lso: stable, since: now}
		}
		seen[k] = s
		o := StableOffsets{Topic: k.topic, Partition: k.partition, Behind: behind}
		if behind > 0 {
			o.Stuck = now.Sub(s.since)
		}
		out = append(out, o)
	}
	w.seen = seen
	slices.SortFunc(out, func(a, b StableOffsets) int {
		return cmp.Or(cmp.Compare(a.Topic, b.Topic), cmp.Compare(a.Partition, b.Partition))
	})
	return out
}
