package pipeline

import (
	"context"
	"fmt"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"

	"github.com/sponsored/sponsor/topics"
)

// lagEvery is how often the runner measures its lag for /metrics.
const lagEvery = 2 * time.Second

// lagMonitor measures, for Stats, how far the instance's tasks are behind
// their partitions and how far the last stable offsets (LSO) of the
// partitions it writes are behind their high watermarks; and it keeps the
// interactions' LSOs that tell whether a task has caught up (firing by the
// wall clock).
//
// Concurrency: owned by the loop goroutine.
type lagMonitor struct {
	adm   *kadm.Client
	names topics.Names
	stats *Stats

	lastReport time.Time
	stable     stableWatch // LSO behind HWM per owned partition, for Stats.Stable

	lastCheck time.Time
	lso       map[int32]int64 // interactions LSO per partition at the last check
}

// due reports whether lagEvery has passed since the last report.
func (m *lagMonitor) due() bool { return time.Since(m.lastReport) >= lagEvery }

// report measures each owned partition's lag (its last stable offset
// minus the task's next offset) and, for the interactions and each output
// written with them (inbox, changelog, decisions: the same partitions), how
// far the LSO is behind the high watermark and since when it has not moved
// (Stats.Stable). Two list requests per check, every lagEvery, however
// many transactions run meanwhile.
func (m *lagMonitor) report(ctx context.Context, tasks map[int32]*task) error {
	m.lastReport = time.Now()
	watched := []string{m.names.Interactions, m.names.Inbox, m.names.Changelog}
	if m.names.Decisions != "" {
		watched = append(watched, m.names.Decisions)
	}
	ends, err := m.adm.ListCommittedOffsets(ctx, watched...)
	if err != nil {
		return fmt.Errorf("list end offsets (last stable): %w", err)
	}
	lag := make(map[int32]int64, len(tasks))
	for p, t := range tasks {
		if o, ok := ends.Lookup(m.names.Interactions, p); ok && o.Err == nil {
			lag[p] = max(0, o.Offset-max(t.part.Input(), 0))
		}
	}
	m.stats.setLag(lag)

	highs, err := m.adm.ListEndOffsets(ctx, watched...)
	if err != nil {
		return fmt.Errorf("list high watermarks: %w", err)
	}
	lso, hwm := map[stableKey]int64{}, map[stableKey]int64{}
	for _, topic := range watched {
		for p := range tasks {
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
	m.stats.setStable(m.stable.observe(m.lastReport, lso, hwm))
	return nil
}

// interactionsLSO returns the last stable offset of each interactions
// partition, listed again when the last list is older than every.
func (m *lagMonitor) interactionsLSO(ctx context.Context, every time.Duration) (map[int32]int64, error) {
	if time.Since(m.lastCheck) >= every || m.lso == nil {
		ends, err := m.adm.ListCommittedOffsets(ctx, m.names.Interactions)
		if err != nil {
			return nil, fmt.Errorf("list interactions end offsets: %w", err)
		}
		m.lso = map[int32]int64{}
		ends.Each(func(o kadm.ListedOffset) {
			if o.Err == nil {
				m.lso[o.Partition] = o.Offset
			}
		})
		m.lastCheck = time.Now()
	}
	return m.lso, nil
}

// clear empties the lag and LSO figures of Stats, for an instance that owns
// no task (iterations, which measure them, do not run without tasks).
func (m *lagMonitor) clear() {
	m.stats.setLag(nil)
	m.stats.setStable(nil)
	m.stable = stableWatch{}
}
