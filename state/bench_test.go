package state

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"math/rand/v2"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/sponsored/sponsor/policy"
	"github.com/sponsored/sponsor/schemas"
)

// The state benchmarks measure the per-record costs of a task's
// transaction: reading and writing a contact through the indexed batch, a
// fan-out's scan of a business index, and the value codecs. Figures are for
// comparison between runs on one machine (docs/performance.md), never
// asserted.

const benchTxn = 5000 // Config.MaxPollRecords' default: records per batch

func benchStore(b *testing.B) *Store {
	b.Helper()
	s, err := Open(b.TempDir(), Options{})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { s.Close() })
	return s
}

func benchUser(i int) string { return fmt.Sprintf("user-%07d", i) }

var benchContact = policy.Contact{Last: [3]policy.Millis{1_767_225_600_000, 0, 1_767_000_000_000}, LastSent: 1_766_000_000_000}

// fill commits n contacts of business into partition p, in batches of
// benchTxn, as transactions would.
func fill(b *testing.B, s *Store, p int32, business string, n int) {
	b.Helper()
	var off int64
	for i := 0; i < n; {
		bt := s.NewBatch(p)
		for j := 0; j < benchTxn && i < n; j, i = j+1, i+1 {
			if err := bt.PutContact(benchUser(i), business, &benchContact, false); err != nil {
				b.Fatal(err)
			}
		}
		off += int64(len(bt.Changes()))
		if err := bt.Commit(off); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkBatchContact reads a contact through a task's indexed batch:
// committed in Pebble (the common case of an interaction from a known
// contact), written earlier in the same batch, and absent (a new contact).
func BenchmarkBatchContact(b *testing.B) {
	const n = 10_000
	s := benchStore(b)
	fill(b, s, 0, "biz-1", n)
	users := make([]string, n)
	for i := range users {
		users[i] = benchUser(i)
	}
	b.Run("committed", func(b *testing.B) {
		b.ReportAllocs()
		bt := s.NewBatch(0)
		defer bt.Close()
		i := 0
		for b.Loop() {
			if _, ok, err := bt.Contact(users[i%n], "biz-1"); err != nil || !ok {
				b.Fatalf("Contact: ok %v, err %v", ok, err)
			}
			i++
		}
	})
	b.Run("in-batch", func(b *testing.B) {
		b.ReportAllocs()
		bt := s.NewBatch(1)
		defer bt.Close()
		for i := range 1000 {
			if err := bt.PutContact(users[i], "biz-1", &benchContact, false); err != nil {
				b.Fatal(err)
			}
		}
		i := 0
		for b.Loop() {
			if _, ok, err := bt.Contact(users[i%1000], "biz-1"); err != nil || !ok {
				b.Fatalf("Contact: ok %v, err %v", ok, err)
			}
			i++
		}
	})
	b.Run("absent", func(b *testing.B) {
		b.ReportAllocs()
		bt := s.NewBatch(0)
		defer bt.Close()
		i := 0
		for b.Loop() {
			if _, ok, err := bt.Contact(users[i%n], "biz-absent"); err != nil || ok {
				b.Fatalf("Contact: ok %v, err %v", ok, err)
			}
			i++
		}
	})
}

// BenchmarkPutContact writes contacts (value, changelog record and index
// entry) into an indexed batch, committing every benchTxn writes as a
// transaction does; the commit's cost is spread over its writes.
func BenchmarkPutContact(b *testing.B) {
	b.ReportAllocs()
	s := benchStore(b)
	users := make([]string, 100_000)
	for i := range users {
		users[i] = benchUser(i)
	}
	bt := s.NewBatch(0)
	var off int64
	i := 0
	for b.Loop() {
		if err := bt.PutContact(users[i%len(users)], "biz-1", &benchContact, false); err != nil {
			b.Fatal(err)
		}
		i++
		if i%benchTxn == 0 {
			off += int64(len(bt.Changes()))
			if err := bt.Commit(off); err != nil {
				b.Fatal(err)
			}
			bt = s.NewBatch(0)
		}
	}
	bt.Close()
}

// BenchmarkInteractionStep is a task's state work for one user-initiated
// interaction of a known contact, as pipeline's task.apply does it: look
// for the user's erasure marker, read the contact, record the event as of
// the watermark, write it back (the policy's own step is inside).
// Sub-benchmarks: "before-grace" applies the event as before the grace
// existed (Apply, not Observe), the baseline of the others in the same
// process; "no-grace" is today's step
// with the default grace of 0 (the watermark is the stream time);
// "grace" keeps each interaction apart until a 1-minute watermark passes it
// (one recent interaction per contact, folded at its next write).
func BenchmarkInteractionStep(b *testing.B) {
	for _, tc := range []struct {
		name  string
		grace policy.Millis
		old   bool
	}{{"before-grace", 0, true}, {"no-grace", 0, false}, {"grace", 60_000, false}} {
		b.Run(tc.name, func(b *testing.B) {
			b.ReportAllocs()
			const n = 10_000
			s := benchStore(b)
			fill(b, s, 0, "biz-1", n)
			pol, err := policy.New(policy.DefaultConfig())
			if err != nil {
				b.Fatal(err)
			}
			users := make([]string, n)
			for i := range users {
				users[i] = benchUser(i)
			}
			bt := s.NewBatch(0)
			var off int64
			i := 0
			at := policy.Millis(1_767_225_600_000)
			for b.Loop() {
				u := users[i%n]
				at++
				// What the partition reads for an interaction: the
				// user's erasure marker (none here), then the contact.
				_, erased, err := bt.Erasure(u)
				if err != nil || erased {
					b.Fatal(err, erased)
				}
				c, known, err := bt.Contact(u, "biz-1")
				if err != nil {
					b.Fatal(err)
				}
				var changed bool
				if tc.old {
					changed = c.Apply(schemas.UserMessage, at)
				} else {
					changed = pol.Observe(&c, schemas.UserMessage, at, at-tc.grace)
				}
				if changed {
					if err := bt.PutContact(u, "biz-1", &c, known); err != nil {
						b.Fatal(err)
					}
				}
				i++
				if i%benchTxn == 0 {
					off += int64(len(bt.Changes()))
					if err := bt.Commit(off); err != nil {
						b.Fatal(err)
					}
					bt = s.NewBatch(0)
				}
			}
			bt.Close()
		})
	}
}

// scanAudience reads every contact of business in partition 0, in chunks of
// 5000 (FanoutChunk's default) as a fan-out does, and returns how many.
func scanAudience(b *testing.B, s *Store, business string) int {
	b.Helper()
	bt := s.NewBatch(0)
	defer bt.Close()
	n, after, done := 0, "", false
	for !done {
		var err error
		after, done, err = bt.Audience(business, after, 5000, func(string, *policy.Contact) error {
			n++
			return nil
		})
		if err != nil {
			b.Fatal(err)
		}
	}
	return n
}

// BenchmarkAudience scans a business's 10k contacts in chunks of 5000
// (FanoutChunk's default), values included, as a fan-out does; ns/op is per
// contact.
func BenchmarkAudience(b *testing.B) {
	const n = 10_000
	s := benchStore(b)
	fill(b, s, 0, "biz-fan", n)
	fill(b, s, 0, "biz-other", n) // another business's contacts around it
	b.ReportAllocs()
	visited := 0
	for b.Loop() {
		visited += scanAudience(b, s, "biz-fan")
	}
	if visited != n*b.N {
		b.Fatalf("visited %d users, want %d", visited, n*b.N)
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(visited), "ns/contact")
}

// BenchmarkCodecs encodes and decodes the state values.
func BenchmarkCodecs(b *testing.B) {
	label := "Open"
	prog := policy.Progress{
		Campaign: policy.Campaign{ID: "camp-000123", Business: "biz-42", SendAt: 10, ExpiresAt: 20,
			Audience: []schemas.AudienceRule{{Kind: schemas.BotCTAClick, WithinDays: 7}}},
		Message: schemas.Message{Text: "Our spring sale starts today", CTALabel: &label},
		Status:  policy.Firing, FireAt: 11, Cursor: "user-0001234",
	}
	meta := policy.Meta{Input: 123456, Campaigns: []int64{10, 20, 30}, Time: 1_767_225_600_000}
	rec := policy.Recipient{Sent: []policy.Millis{1_767_225_600_000, 1_767_225_700_000}}
	buf := make([]byte, 0, 256)
	cv, mv, pv, rv := AppendContact(nil, &benchContact), AppendMeta(nil, &meta), AppendProgress(nil, &prog), AppendRecipient(nil, &rec)
	for _, bc := range []struct {
		name string
		fn   func() error
	}{
		{"contact/append", func() error { buf = AppendContact(buf[:0], &benchContact); return nil }},
		{"contact/append-nil", func() error { _ = AppendContact(nil, &benchContact); return nil }},
		{"contact/decode", func() error { _, err := DecodeContact(cv); return err }},
		{"recipient/append", func() error { buf = AppendRecipient(buf[:0], &rec); return nil }},
		{"recipient/decode", func() error { _, err := DecodeRecipient(rv); return err }},
		{"meta/append", func() error { buf = AppendMeta(buf[:0], &meta); return nil }},
		{"meta/decode", func() error { _, err := DecodeMeta(mv); return err }},
		{"progress/append", func() error { buf = AppendProgress(buf[:0], &prog); return nil }},
		{"progress/decode", func() error { _, err := DecodeProgress(pv); return err }},
	} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if err := bc.fn(); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkRestorerAdd applies changelog records of contacts, flushing every 20 000 as the restore does; it is the
// store's share of the restore rate, without Kafka.
func BenchmarkRestorerAdd(b *testing.B) {
	b.ReportAllocs()
	s := benchStore(b)
	keys := make([][]byte, 100_000)
	for i := range keys {
		keys[i] = contactKey(nil, benchUser(i), "biz-1")
	}
	v := AppendContact(nil, &benchContact)
	r := s.NewRestorer(0)
	defer r.Close()
	i := 0
	for b.Loop() {
		if err := r.Add(keys[i%len(keys)], v); err != nil {
			b.Fatal(err)
		}
		i++
		if r.Len() >= 20_000 {
			if err := r.Flush(int64(i)); err != nil {
				b.Fatal(err)
			}
		}
	}
}

// BenchmarkAudienceFlushed is BenchmarkAudience over 200k contacts that
// were flushed to sstables (as after a restore or a long ingest), and
// reports the block cache's hits and misses per contact.
func BenchmarkAudienceFlushed(b *testing.B) {
	const n = 200_000
	s := benchStore(b)
	fill(b, s, 0, "biz-fan", n)
	if err := s.db.Flush(); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	m0 := s.db.Metrics()
	visited := 0
	for b.Loop() {
		visited += scanAudience(b, s, "biz-fan")
	}
	m1 := s.db.Metrics()
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(visited), "ns/contact")
	b.ReportMetric(float64(m1.BlockCache.Hits-m0.BlockCache.Hits)/float64(visited), "cache_hits/contact")
	b.ReportMetric(float64(m1.BlockCache.Misses-m0.BlockCache.Misses)/float64(visited), "cache_misses/contact")
	b.ReportMetric(float64(m1.Levels[0].TablesCount), "L0_tables")
}

// BenchmarkUserView looks a user up (`sponsor state get` without
// --business) in a partition of 1M flushed contacts: contacts are keyed by
// business, so the view reads every contact of the partition; ns/op is per
// look-up, ns/contact per contact read.
func BenchmarkUserView(b *testing.B) {
	const n = 1_000_000
	s := benchStore(b)
	for i := range 10 {
		fill(b, s, 0, fmt.Sprintf("biz-%d", i), n/10)
	}
	if err := s.db.Flush(); err != nil {
		b.Fatal(err)
	}
	pol := defaultPolicy(b)
	for b.Loop() {
		v, err := s.User(benchUser(n/20), "", pol)
		if err != nil || len(v.Partitions) != 1 || len(v.Partitions[0].Contacts) != 10 {
			b.Fatalf("view: %+v, %v", v, err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/contact")
}

var (
	benchRestoreRecords    = flag.Int("bench.restore", 1_000_000, "changelog records of BenchmarkRestore")
	benchRestorePartitions = flag.Int("bench.restore.partitions", 4, "partitions BenchmarkRestore restores at once")
)

// restoreChangelog is a generated changelog of n records of one partition
// (seed picks it),
// shaped as a task's: contacts of realistic identifiers (user ids of 20-36
// characters, business ids of 15) in random order, about 5% of them
// rewritten later and 2% deleted, a recipient record per 20 contacts and
// the task's metadata every 5000 records (a transaction's).
func restoreChangelog(seed uint64, n int) (keys, values [][]byte) {
	rng := rand.New(rand.NewPCG(seed, 17))
	keys, values = make([][]byte, 0, n), make([][]byte, 0, n)
	var written [][]byte
	user := func() string {
		id := fmt.Sprintf("%016x%016x%016x", rng.Uint64(), rng.Uint64(), rng.Uint64())
		return "u-" + id[:18+rng.IntN(17)]
	}
	c := benchContact
	for i := 0; len(keys) < n; i++ {
		var k, v []byte
		switch r := rng.IntN(1000); {
		case i%5000 == 4999:
			k, v = MetaChangelogKey(), AppendMeta(nil, &policy.Meta{Input: int64(i), Time: int64(i), Campaigns: []int64{int64(i)}})
		case r < 50 && len(written) > 0:
			k = written[rng.IntN(len(written))]
			c.Last[0] = int64(i)
			v = AppendContact(nil, &c)
		case r < 70 && len(written) > 0:
			k = written[rng.IntN(len(written))] // a deletion
		case r < 120:
			k = recipientKey(nil, user())
			v = AppendRecipient(nil, &policy.Recipient{Sent: []policy.Millis{int64(i)}})
		default:
			k = ContactChangelogKey(user(), fmt.Sprintf("b-%013d", rng.IntN(100_000)))
			v = AppendContact(nil, &c)
			written = append(written, k)
		}
		keys, values = append(keys, k), append(values, v)
	}
	return keys, values
}

// cpuTime is the process's user and system CPU time so far.
func cpuTime(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkRestore restores the same generated changelog
// (-bench.restore records, 1M by default, split over
// -bench.restore.partitions partitions, 4 by default, restored at once as
// pipeline.DefaultRestoreParallelism does) into an empty store with both
// paths, interleaved in each round: the Restorer (batches of 20 000
// through the memtable, as pipeline.Restore does for a small catch-up)
// and the Ingester (sorted runs, tables, one ingest). Each is timed from
// its first record to the return of the last partition's restore (every
// checkpoint written), without Kafka; CPU is the process's, Pebble's
// background work included. It reports both rates, their ratio and the
// CPU per record of each.
func BenchmarkRestore(b *testing.B) {
	parts := *benchRestorePartitions
	type partition struct{ keys, values [][]byte }
	ps := make([]partition, parts)
	n := 0
	for p := range ps {
		ps[p].keys, ps[p].values = restoreChangelog(uint64(p), *benchRestoreRecords/parts)
		n += len(ps[p].keys)
	}
	// each runs restore for every partition at once, and returns how long
	// it took and the CPU it used.
	each := func(restore func(s *Store, p int32, keys, values [][]byte) error) (wall, cpu time.Duration) {
		s, err := Open(b.TempDir(), Options{})
		if err != nil {
			b.Fatal(err)
		}
		start, cpu0 := time.Now(), cpuTime(b)
		var wg sync.WaitGroup
		errs := make([]error, parts)
		for p := range ps {
			wg.Go(func() { errs[p] = restore(s, int32(p), ps[p].keys, ps[p].values) })
		}
		wg.Wait()
		wall, cpu = time.Since(start), cpuTime(b)-cpu0
		if err := errors.Join(errs...); err != nil {
			b.Fatal(err)
		}
		if err := s.Close(); err != nil {
			b.Fatal(err)
		}
		return wall, cpu
	}
	batch := func(s *Store, p int32, keys, values [][]byte) error {
		r := s.NewRestorer(p)
		defer r.Close()
		for i := range keys {
			if err := r.Add(keys[i], values[i]); err != nil {
				return err
			}
			if r.Len() >= 20_000 || i == len(keys)-1 {
				if err := r.Flush(int64(i + 1)); err != nil {
					return err
				}
			}
		}
		return nil
	}
	ingest := func(s *Store, p int32, keys, values [][]byte) error {
		in := s.NewIngester(p, true)
		defer in.Close()
		for i := range keys {
			if err := in.Add(keys[i], values[i]); err != nil {
				return err
			}
		}
		return in.Finish(context.Background(), int64(len(keys)))
	}
	var batchWall, ingestWall, batchCPU, ingestCPU time.Duration
	for b.Loop() {
		w, c := each(batch)
		batchWall, batchCPU = batchWall+w, batchCPU+c
		w, c = each(ingest)
		ingestWall, ingestCPU = ingestWall+w, ingestCPU+c
	}
	recs := float64(n) * float64(b.N)
	b.ReportMetric(recs/batchWall.Seconds(), "batch_rec/s")
	b.ReportMetric(recs/ingestWall.Seconds(), "ingest_rec/s")
	b.ReportMetric(batchWall.Seconds()/ingestWall.Seconds(), "ratio")
	b.ReportMetric(float64(batchCPU.Microseconds())/recs, "batch_cpu_us/rec")
	b.ReportMetric(float64(ingestCPU.Microseconds())/recs, "ingest_cpu_us/rec")
}
