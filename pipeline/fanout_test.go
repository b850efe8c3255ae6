package pipeline

import (
	"fmt"
	"runtime"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sponsored/sponsor/schemas"
	"github.com/sponsored/sponsor/topics"
)

// BenchmarkTaskFanout fans campaigns out through one task, the partition's
// decisions and the records the task encodes for them (inbox, decision,
// changelog), to the 20k contacts of one business, in chunks of 5000
// (FanoutChunk's default) with one committed batch per chunk. Each op is
// one campaign; allocs/delivery counts every allocation of its
// transactions, its commits included. The fan-out is tuned not to
// allocate per delivery (docs/performance.md): this keeps it measured.
func BenchmarkTaskFanout(b *testing.B) {
	const n, chunk = 20_000, 5000
	e := testEnv(b, 1, topics.Murmur2)
	e.chunk = chunk
	tk := newTestTask(b, e, 0)
	var in, cl int64
	commit := func() {
		b.Helper()
		if err := tk.finish(); err != nil {
			b.Fatal(err)
		}
		cl++
		if err := tk.batch.Commit(cl); err != nil {
			b.Fatal(err)
		}
		tk.batch = nil
		tk.begin(tk.wall)
	}
	process := func(recs ...*kgo.Record) {
		b.Helper()
		for _, r := range recs {
			r.Offset = in
			in++
		}
		if _, err := tk.process(recs); err != nil {
			b.Fatal(err)
		}
	}
	t0 := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)
	recs := make([]*kgo.Record, 0, chunk)
	for i := range n {
		recs = append(recs, interaction(b, e, fmt.Sprintf("user-%07d", i), "biz", schemas.UserMessage, t0, 0))
		if len(recs) == chunk {
			process(recs...)
			commit()
			recs = recs[:0]
		}
	}
	var delivered, mallocs uint64
	var ms runtime.MemStats
	at := t0
	i := 0
	for b.Loop() {
		// Two days on, so that the 24-hour window lets every contact
		// have the next campaign; a LAUNCH already due fires at once.
		at = at.Add(48 * time.Hour)
		i++
		process(interaction(b, e, "clock", "other", schemas.UserMessage, at, 0))
		c := launch(fmt.Sprintf("camp-%d", i), "biz", at.Add(-time.Hour))
		if err := tk.applyCampaign(campaignRec(b, e, c)); err != nil {
			b.Fatal(err)
		}
		commit()
		runtime.ReadMemStats(&ms)
		m0 := ms.Mallocs
		for range n/chunk + 1 {
			process()
			for _, r := range tk.out {
				if r.Topic == e.names.Inbox {
					delivered++
				}
			}
			commit()
		}
		runtime.ReadMemStats(&ms)
		mallocs += ms.Mallocs - m0
	}
	if delivered != uint64(b.N)*n {
		b.Fatalf("%d deliveries in %d fan-outs, want %d each", delivered, b.N, n)
	}
	b.ReportMetric(float64(mallocs)/float64(delivered), "allocs/delivery")
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(delivered), "ns/delivery")
}
