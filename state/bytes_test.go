package state

import (
	"context"
	"flag"
	"io/fs"
	"math/rand/v2"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sponsored/sponsor/loadgen"
	"github.com/sponsored/sponsor/policy"
	"github.com/sponsored/sponsor/schemas"
)

// The bytes a contact costs, measured with identifiers of the platform's
// shape (issue 17): user ids of 20 to 36 characters (half UUIDs, half
// 20-character base-62 ids), business ids of 15 digits, ten contacts per
// user, the businesses' sizes Zipf-distributed (most have a contact or two
// in a partition, a few have thousands).
//
//	go test -run '^$' -bench BenchmarkBytesPerContact -benchtime 1x ./state/ [-bytes.contacts 200000]

var bytesContacts = flag.Int("bytes.contacts", 200_000, "contacts BenchmarkBytesPerContact writes")

// realisticContacts is the state of n contacts (n/10 users with ten
// businesses each) in event time around t0: each contact has a last user
// message within the retention, one in three a bot start, one in ten a
// click, one in 50 a block, one in 100 an opt-out, and one in five a
// delivery in the last days (whose users then have a recipient record).
type realisticState struct {
	users      []string
	contacts   []realisticContact
	recipients map[string]*policy.Recipient
}

type realisticContact struct {
	user, business string
	c              policy.Contact
}

func realisticContacts(n int) realisticState {
	const t0 = policy.Millis(1_780_000_000_000) // mid-2026
	rng := rand.New(rand.NewPCG(42, 42))
	businesses := max(n/20, 100)
	zipf := rand.NewZipf(rand.New(rand.NewPCG(1, 2)), 1.1, 1, uint64(businesses-1))
	st := realisticState{recipients: map[string]*policy.Recipient{}}
	for i := 0; len(st.contacts) < n; i++ {
		user := loadgen.RealisticUserID(i)
		st.users = append(st.users, user)
		seen := map[uint64]bool{}
		for len(seen) < 10 && len(st.contacts) < n {
			bi := zipf.Uint64()
			if seen[bi] {
				continue
			}
			seen[bi] = true
			var c policy.Contact
			c.Last[schemas.UserMessage] = t0 - rng.Int64N(365*policy.Day)
			if rng.IntN(3) == 0 {
				c.Last[schemas.BotStarted] = t0 - rng.Int64N(365*policy.Day)
			}
			if rng.IntN(10) == 0 {
				c.Last[schemas.BotCTAClick] = t0 - rng.Int64N(30*policy.Day)
			}
			if rng.IntN(50) == 0 {
				c.Blocked, c.BlockAt = true, t0-rng.Int64N(90*policy.Day)
			}
			if rng.IntN(100) == 0 {
				c.OptedOut, c.OptAt = true, t0-rng.Int64N(90*policy.Day)
			}
			if rng.IntN(5) == 0 {
				c.LastSent = t0 - rng.Int64N(7*policy.Day)
				r := st.recipients[user]
				if r == nil {
					r = &policy.Recipient{}
					st.recipients[user] = r
				}
				if c.LastSent > t0-policy.Day {
					r.Sent = append(r.Sent, c.LastSent)
				}
			}
			st.contacts = append(st.contacts, realisticContact{user, loadgen.RealisticBusinessID(int(bi)), c})
		}
	}
	// In the order interactions of many users interleave, not user by
	// user: a batch of one user's contacts would compress their ids away.
	rng.Shuffle(len(st.contacts), func(i, j int) { st.contacts[i], st.contacts[j] = st.contacts[j], st.contacts[i] })
	rng.Shuffle(len(st.users), func(i, j int) { st.users[i], st.users[j] = st.users[j], st.users[i] })
	return st
}

// BenchmarkBytesPerContact writes realisticContacts through a store's
// batches (5,000 changes each, as a transaction), compacts the store and
// reports its tables' bytes on disk per contact, recipient records
// included (pebble_B/contact); and produces the same changes as the
// changelog's records, through franz-go to an in-process broker in batches
// of one transaction's partition share, and reports the bytes of the record
// batches as written (compressed as the broker stores them) per record,
// for each codec (changelog_CODEC_B/record; zstd1 is the pipeline's
// default, --compression zstd).
func BenchmarkBytesPerContact(b *testing.B) {
	n := *bytesContacts
	st := realisticContacts(n)
	var keyBytes, valueBytes, records int
	for range b.N {
		dir := b.TempDir()
		s, err := Open(dir, Options{})
		if err != nil {
			b.Fatal(err)
		}
		var changes []Change
		bt := s.NewBatch(0)
		commit := func() {
			changes = append(changes, bt.Changes()...)
			if err := bt.Commit(int64(len(changes))); err != nil {
				b.Fatal(err)
			}
			bt = s.NewBatch(0)
			// Several overlapping flushes, so that the compaction below
			// merges them into the last level's tables, written with its
			// options, rather than moving one flushed table down.
			if len(changes)%(10*benchTxn) == 0 {
				if err := s.db.Flush(); err != nil {
					b.Fatal(err)
				}
			}
		}
		for i := range st.contacts {
			rc := &st.contacts[i]
			if err := bt.PutContact(rc.user, rc.business, &rc.c, false); err != nil {
				b.Fatal(err)
			}
			if len(bt.Changes()) >= benchTxn {
				commit()
			}
		}
		for _, u := range st.users {
			if r := st.recipients[u]; r != nil && len(r.Sent) > 0 {
				if err := bt.PutRecipient(u, r); err != nil {
					b.Fatal(err)
				}
			}
			if len(bt.Changes()) >= benchTxn {
				commit()
			}
		}
		commit()
		bt.Close()
		if err := s.db.Flush(); err != nil {
			b.Fatal(err)
		}
		if err := s.db.Compact(context.Background(), []byte{0}, []byte{0xff}, false); err != nil {
			b.Fatal(err)
		}
		m := s.db.Metrics()
		var tables int64
		for _, l := range m.Levels {
			tables += l.TablesSize
		}
		if err := s.Close(); err != nil {
			b.Fatal(err)
		}
		onDisk := sstBytes(b, dir) // once closed: without the tables the compaction made obsolete
		b.ReportMetric(float64(onDisk)/float64(n), "pebble_B/contact")
		b.ReportMetric(float64(tables)/float64(n), "tables_B/contact")

		keyBytes, valueBytes, records = 0, 0, len(changes)
		for _, c := range changes {
			keyBytes += len(c.Key)
			valueBytes += len(c.Value)
		}
		for _, codec := range []struct {
			name string
			c    kgo.CompressionCodec
		}{
			{"none", kgo.NoCompression()}, {"snappy", kgo.SnappyCompression()},
			{"lz4", kgo.Lz4Compression()}, {"zstd", kgo.ZstdCompression()}, {"zstd1", kgo.ZstdCompression().WithLevel(1)},
		} {
			bytes := changelogBytes(b, changes, codec.c)
			b.ReportMetric(float64(bytes)/float64(records), "changelog_"+codec.name+"_B/record")
		}
	}
	b.ReportMetric(float64(keyBytes)/float64(records), "key_B/record")
	b.ReportMetric(float64(valueBytes)/float64(records), "value_B/record")
	b.ReportMetric(float64(records)/float64(n), "records/contact")
}

// sstBytes sums the sizes of the tables in a store's folder.
func sstBytes(b *testing.B, dir string) int64 {
	b.Helper()
	var n int64
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.HasSuffix(path, ".sst") {
			return err
		}
		info, err := d.Info()
		if err == nil {
			n += info.Size()
		}
		return err
	})
	if err != nil {
		b.Fatal(err)
	}
	return n
}

// changelogBytes produces changes to one partition of an in-process broker
// with codec, the records of a transaction's share of one partition
// (benchTxn / 6 partitions) at a time, and returns the bytes of the record
// batches written.
func changelogBytes(b *testing.B, changes []Change, codec kgo.CompressionCodec) int64 {
	b.Helper()
	cluster, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(1, "changelog"))
	if err != nil {
		b.Fatal(err)
	}
	defer cluster.Close()
	var written int64
	cl, err := kgo.NewClient(kgo.SeedBrokers(cluster.ListenAddrs()...), kgo.DefaultProduceTopic("changelog"),
		kgo.ProducerBatchCompression(codec), kgo.ProducerLinger(time.Second), kgo.RecordPartitioner(kgo.ManualPartitioner()),
		kgo.WithHooks(batchBytes{&written}))
	if err != nil {
		b.Fatal(err)
	}
	defer cl.Close()
	ctx := context.Background()
	const perTxn = benchTxn / 6
	for i := 0; i < len(changes); i += perTxn {
		var recs []*kgo.Record
		for _, c := range changes[i:min(i+perTxn, len(changes))] {
			recs = append(recs, &kgo.Record{Key: c.Key, Value: c.Value})
		}
		for _, r := range recs {
			cl.Produce(ctx, r, nil)
		}
		if err := cl.Flush(ctx); err != nil {
			b.Fatal(err)
		}
	}
	return written
}

// batchBytes sums the compressed bytes of the record batches a client
// wrote.
type batchBytes struct{ n *int64 }

func (h batchBytes) OnProduceBatchWritten(_ kgo.BrokerMetadata, _ string, _ int32, m kgo.ProduceBatchMetrics) {
	*h.n += int64(m.CompressedBytes)
}
