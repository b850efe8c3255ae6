package e2e

import (
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sponsored/sponsor/kafkaconn"
	"github.com/sponsored/sponsor/loadgen"
	"github.com/sponsored/sponsor/pipeline"
	"github.com/sponsored/sponsor/schemas"
)

// BenchmarkBytesPerDelivery: the bytes the topics hold, as the broker
// stores them (the record batches as written, compressed, control batches
// included), per contact and per delivery, with identifiers of the
// platform's shape (issue 17): user ids of 20 to 36 characters (half UUIDs,
// half 20 base-62 characters), business ids of 15 digits. M users each send
// one message to the campaign's business and one to another business of
// 1,000; the campaign then fans out to the M contacts. Reported: the
// interactions' bytes per record (the input, for scale), the changelog's
// per record after the ingest (each record a contact's only version: what
// compaction keeps), and the inbox's, the changelog's and the decisions'
// bytes and records per delivery during the fan-out.
//
//	go test -run '^$' -bench BenchmarkBytesPerDelivery -benchtime 1x ./e2e/ -bench.contacts 100000
func BenchmarkBytesPerDelivery(b *testing.B) {
	m := *benchContacts
	for range b.N {
		b.StopTimer()
		c := newCluster(b, "bytes", int32(*benchParts))
		biz := loadgen.RealisticBusinessID(0)
		ins, sendAt := realisticFanoutWorkload(m, biz)
		recs := make([]*kgo.Record, len(ins))
		for i := range ins {
			recs[i] = c.interactionRecord(b, &ins[i])
		}
		c.produce(b, recs...)
		recs = nil
		ends := c.offsets(b, c.names.Interactions, false)
		h := startRunner(b, c, b.TempDir(), nil)
		waitCommitted(b, c, c.group, ends, time.Now(), h.alive)
		in := c.topicBytes(b, c.names.Interactions)
		cl0 := c.topicBytes(b, c.names.Changelog)

		camp := schemas.Campaign{CampaignID: "0b7d1c52-9a3e-4f4e-8d2a-6c1f0e9b3a77", BusinessID: biz, Action: schemas.Launch, SendAt: sendAt,
			ExpiresAt: sendAt.Add(365 * 24 * time.Hour), Message: benchMessage}
		c.produce(b, c.campaignRecord(b, &camp))
		start := time.Now()
		for h.r.Stats().Delivered() < int64(m) {
			if err := h.alive(); err != nil {
				b.Fatalf("pipeline stopped during the fan-out: %v", err)
			}
			if time.Since(start) > 10*time.Minute {
				b.Fatalf("fan-out of %d contacts: %d delivered after 10 minutes", m, h.r.Stats().Delivered())
			}
			time.Sleep(5 * time.Millisecond) // a sampling interval, not an assertion
		}
		h.stop(b)
		cl1 := c.topicBytes(b, c.names.Changelog)
		inbox := c.topicBytes(b, c.names.Inbox)
		dec := c.topicBytes(b, c.names.Decisions)

		per := func(s stored, n int) float64 { return float64(s.bytes) / float64(n) }
		b.ReportMetric(per(in, int(in.records)), "interactions_B/record")
		b.ReportMetric(per(cl0, int(cl0.records)), "changelog_B/record")
		b.ReportMetric(per(cl0, 2*m), "changelog_B/contact")
		b.ReportMetric(per(inbox, m), "inbox_B/delivery")
		cld := stored{bytes: cl1.bytes - cl0.bytes, records: cl1.records - cl0.records}
		b.ReportMetric(per(cld, m), "changelog_B/delivery")
		b.ReportMetric(per(dec, m), "decisions_B/delivery")
		b.ReportMetric(float64(inbox.records+cld.records+dec.records)/float64(m), "records/delivery")
		b.ReportMetric(per(stored{bytes: inbox.bytes + cld.bytes + dec.bytes}, m), "written_B/delivery")
		b.Logf("%d contacts: interactions %d B in %d records; changelog after the ingest %d B in %d records (%v); "+
			"during the fan-out: inbox %d B in %d records (%v), changelog %d B in %d records, decisions %d B in %d records (%v)",
			m, in.bytes, in.records, cl0.bytes, cl0.records, cl0.codecs, inbox.bytes, inbox.records, inbox.codecs,
			cld.bytes, cld.records, dec.bytes, dec.records, dec.codecs)
	}
}

// TestProducerCompression: the pipeline's record batches on the inbox,
// changelog and decisions topics are zstd by default, and Snappy with
// --compression snappy (transaction markers are control batches, never
// compressed). Apache Kafka keeps the changelog and the decisions in zstd
// whatever the producer wrote (their compression.type, topics.Catalog),
// recompressing Snappy batches; kfake stores every batch as it came.
func TestProducerCompression(t *testing.T) {
	for _, tc := range []struct{ flag, want string }{{"", "zstd"}, {"snappy", "snappy"}} {
		t.Run("compression="+tc.flag, func(t *testing.T) {
			c := newCluster(t, "codec", 2)
			const m = 300
			biz := loadgen.RealisticBusinessID(0)
			ins, sendAt := realisticFanoutWorkload(m, biz)
			for i := range ins {
				c.produce(t, c.interactionRecord(t, &ins[i]))
			}
			h := startRunner(t, c, t.TempDir(), func(cfg *pipeline.Config) { cfg.Compression = tc.flag })
			camp := schemas.Campaign{CampaignID: "codec", BusinessID: biz, Action: schemas.Launch, SendAt: sendAt,
				ExpiresAt: sendAt.Add(time.Hour), Message: benchMessage}
			c.produce(t, c.campaignRecord(t, &camp))
			deadline := time.Now().Add(2 * time.Minute)
			for h.r.Stats().Delivered() < m {
				if err := h.alive(); err != nil {
					t.Fatalf("pipeline stopped: %v", err)
				}
				if time.Now().After(deadline) {
					t.Fatalf("%d of %d delivered after 2 minutes", h.r.Stats().Delivered(), m)
				}
				time.Sleep(10 * time.Millisecond) // a polling interval, not an assertion
			}
			h.stop(t)
			for _, topic := range []string{c.names.Inbox, c.names.Changelog, c.names.Decisions} {
				s := c.topicBytes(t, topic)
				want := tc.want
				if c.stack == nil && topic != c.names.Inbox {
					want = "zstd" // a real broker applies the topic's compression.type
				}
				for codec := range s.codecs {
					if codec != want && codec != "none" {
						t.Errorf("%s holds %s batches, want only %s (and uncompressed control batches): %v", topic, codec, want, s.codecs)
					}
				}
				t.Logf("%s: %d records in %d bytes, batches %v", topic, s.records, s.bytes, s.codecs)
				// A decisions record per chunk may sit alone in its batch,
				// which franz-go sends uncompressed when the codec does not
				// shrink it (Snappy, on random ids).
				if s.codecs[want] == 0 && topic != c.names.Decisions {
					t.Errorf("%s holds no %s batch: %v", topic, want, s.codecs)
				}
			}
		})
	}
}

// stored is what a topic's record batches take: their bytes as written
// (compressed), the records in them, and their codecs.
type stored struct {
	bytes, records int64
	codecs         map[string]int
}

// topicBytes reads topic from its start to its last stable offsets and
// sums its record batches' sizes as fetched, which are the batches as the
// producer wrote them (and as the broker stores them).
func (c *cluster) topicBytes(t testing.TB, topic string) stored {
	t.Helper()
	var mu sync.Mutex
	s := stored{codecs: map[string]int{}}
	hook := fetchBatchBytes(func(m kgo.FetchBatchMetrics) {
		mu.Lock()
		defer mu.Unlock()
		s.bytes += int64(m.CompressedBytes)
		s.records += int64(m.NumRecords)
		s.codecs[[]string{"none", "gzip", "snappy", "lz4", "zstd"}[min(m.CompressionType, 4)]]++
	})
	ends := c.offsets(t, topic, true)
	rd := kafkaconn.Reader{Opts: []kgo.Opt{kgo.SeedBrokers(c.brokers...), kgo.WithHooks(hook)},
		Topics: map[string][]int32{topic: nil}, Ends: map[string]map[int32]int64{topic: ends}}
	if err := rd.Read(testContext(t, 5*time.Minute), func(*kgo.Record) error { return nil }); err != nil {
		t.Fatalf("read %s: %v", topic, err)
	}
	return s
}

type fetchBatchBytes func(kgo.FetchBatchMetrics)

func (f fetchBatchBytes) OnFetchBatchRead(_ kgo.BrokerMetadata, _ string, _ int32, m kgo.FetchBatchMetrics) {
	f(m)
}

// realisticFanoutWorkload is, for each of m users, a USER_MESSAGE to biz
// and one to another of 1,000 businesses, with a UUID event id, in random
// order, and a send time after all of them in the wall clock's past.
func realisticFanoutWorkload(m int, biz string) ([]schemas.Interaction, time.Time) {
	rng := rand.New(rand.NewPCG(9, 9))
	out := make([]schemas.Interaction, 0, 2*m)
	for i := range m {
		u := loadgen.RealisticUserID(i)
		for _, bz := range []string{biz, loadgen.RealisticBusinessID(1 + rng.IntN(1000))} {
			out = append(out, schemas.Interaction{EventID: loadgen.RealisticUserID(2 * (m + len(out))), UserID: u, BusinessID: bz, Kind: schemas.UserMessage})
		}
	}
	// Users' interactions interleave: a changelog batch of one user's
	// contacts after another would compress the ids away.
	rng.Shuffle(len(out), func(i, j int) { out[i], out[j] = out[j], out[i] })
	for i := range out {
		out[i].OccurredAt = benchT0.Add(time.Duration(i) * time.Millisecond)
	}
	return out, benchT0.Add(time.Duration(len(out))*time.Millisecond + time.Hour)
}
