package e2e

import (
	"bufio"
	"bytes"
	"context"
	"flag"
	"fmt"
	"maps"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sponsored/sponsor/kafkaconn"
	"github.com/sponsored/sponsor/pipeline"
	"github.com/sponsored/sponsor/policy"
	"github.com/sponsored/sponsor/schemas"
)

// End-to-end benchmarks (issue 5). Each reports its figures with
// b.ReportMetric, and each figure of the pipeline next to a baseline measured
// in the same run on the same broker, because the machines are shared and
// noisy: only the ratios mean something from one run to the next. They run
// on the embedded kfake, or on a real Kafka when KAFKA_BROKERS is set
// (newCluster's convention). Nothing here asserts a time.
//
// The broker (kfake), the pipeline and the baseline share this process: the
// peak RSS reported includes kfake's in-memory log, and every rate is that
// of one process doing the broker's work too.
//
// The sizes are flags so that `make bench` can keep the run short and a
// reader can scale them up:
//
//	go test -run '^$' -bench . -benchtime 1x ./e2e -bench.interactions 200000 -bench.contacts 100000

var (
	benchInteractions = flagInt("bench.interactions", 200_000, "interactions pre-produced for BenchmarkSteadyState")
	benchContacts     = flagInt("bench.contacts", 100_000, "contacts of the business BenchmarkFanout fans out to, and of BenchmarkRestore's state")
	benchParts        = flagInt("bench.partitions", 6, "partitions of every topic (the pipeline's default)")
	benchMaxPoll      = flagInt("bench.maxpoll", 0, "MaxPollRecords in BenchmarkSteadyState, i.e. the most interactions per transaction, of the pipeline and of its baseline alike (0: the pipeline's default)")
	benchNoDecisions  = flag.Bool("bench.nodecisions", false, "run the pipeline of BenchmarkFanout with the decisions topic off (--decisions=false): two records per delivery instead of three")
	benchCompression  = flag.String("bench.compression", "", "the pipeline's --compression in every runner the e2e tests and benchmarks start (empty: its default, zstd)")
	benchChunk        = flagInt("bench.fanoutchunk", 0, "FanoutChunk of BenchmarkFanout's pipeline, and the records per partition of its baseline's transactions (0: the pipeline's default)")
	benchSettle       = flag.Duration("bench.settle", 0, "how long BenchmarkFanout waits after its ingest before it publishes the campaign, so that Pebble's compactions of the ingest end before the measured phase (0: at once, as before)")
	benchProfile      = flag.String("bench.cpuprofile", "", "a folder to write a CPU profile of each benchmark's measured pipeline phase to (steady.prof, fanout.prof), without the ingest or the baselines that -test.cpuprofile would mix in")
)

// benchPoll is the steady state's records per transaction, the pipeline's
// and its baseline's: a comparison at equal transaction sizes.
func benchPoll() int {
	if *benchMaxPoll > 0 {
		return *benchMaxPoll
	}
	return pipeline.DefaultMaxPollRecords
}

// phaseSums returns the total time of each phase of the committed
// transactions (sponsor_transaction_phase_seconds) in reg.
func phaseSums(b *testing.B, reg *prometheus.Registry) map[string]time.Duration {
	b.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		b.Fatalf("gather metrics: %v", err)
	}
	out := map[string]time.Duration{}
	for _, mf := range mfs {
		if mf.GetName() != "sponsor_transaction_phase_seconds" {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "phase" {
					out[l.GetValue()] = time.Duration(m.GetHistogram().GetSampleSum() * float64(time.Second))
				}
			}
		}
	}
	return out
}

// fanoutChunk is BenchmarkFanout's FanoutChunk, the pipeline's and its
// baseline's: a comparison at equal transaction sizes.
func fanoutChunk() int {
	if *benchChunk > 0 {
		return *benchChunk
	}
	return pipeline.DefaultFanoutChunk
}

// profilePhase starts a CPU profile of one phase into -bench.cpuprofile's
// folder and returns the function that ends it; without the flag it does
// nothing.
func profilePhase(b *testing.B, name string) (stop func()) {
	b.Helper()
	if *benchProfile == "" {
		return func() {}
	}
	if err := os.MkdirAll(*benchProfile, 0o755); err != nil {
		b.Fatalf("profile folder: %v", err)
	}
	f, err := os.Create(filepath.Join(*benchProfile, name+".prof"))
	if err != nil {
		b.Fatalf("profile: %v", err)
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		b.Fatalf("start CPU profile (is -test.cpuprofile also set?): %v", err)
	}
	return func() {
		pprof.StopCPUProfile()
		if err := f.Close(); err != nil {
			b.Errorf("profile %s: %v", name, err)
		}
	}
}

// flagInt is an int flag whose default an environment variable may set
// (BENCH_INTERACTIONS for bench.interactions), for make.
func flagInt(name string, def int, usage string) *int {
	if s := os.Getenv(strings.ToUpper(strings.ReplaceAll(name, ".", "_"))); s != "" {
		if n, err := strconv.Atoi(s); err == nil {
			def = n
		}
	}
	return flag.Int(name, def, usage)
}

// BenchmarkSteadyState: interactions/s through the whole pipeline
// (exactly-once on: every poll is one transaction carrying the changelog,
// the inbox and the offsets), against a raw franz-go GroupTransactSession
// consume -> produce loop over the same records into another topic (no
// decode, no state) on the same broker. Both are timed from the client's
// start until the group's committed offsets (which the pipeline commits in
// the transaction with its state) reach the end of every partition. The
// baseline runs before and after the pipeline; the ratio is against their
// mean.
func BenchmarkSteadyState(b *testing.B) {
	n := *benchInteractions
	for range b.N {
		b.StopTimer()
		resetPeakRSS()
		c := newCluster(b, "steady", int32(*benchParts))
		produced := time.Now()
		ins := steadyWorkload(n, 50_000, 2_000)
		recs := make([]*kgo.Record, len(ins))
		for i := range ins {
			recs[i] = c.interactionRecord(b, &ins[i])
		}
		c.produce(b, recs...)
		avg := avgValue(recs)
		recs = nil
		ends := c.offsets(b, c.names.Interactions, false)
		b.Logf("pre-produced %d interactions (%d bytes each on average) on %d partitions in %s",
			n, avg, c.parts, time.Since(produced).Round(time.Millisecond))
		b.StartTimer()

		cpu0 := processCPU()
		base1 := rawTransactCopy(b, c, c.group+"-raw1", ends)
		cpu1 := processCPU()
		stopProfile := profilePhase(b, "steady")
		pipe := runPipelineUntil(b, c, c.group, ends)
		stopProfile()
		cpu2 := processCPU()
		base2 := rawTransactCopy(b, c, c.group+"-raw2", ends)
		cpu3 := processCPU()

		b.StopTimer()
		rate := func(d time.Duration) float64 { return float64(n) / d.Seconds() }
		baseline := (rate(base1.total) + rate(base2.total)) / 2
		b.ReportMetric(rate(pipe.total), "pipeline_rec/s")
		b.ReportMetric(baseline, "baseline_rec/s")
		b.ReportMetric(rate(pipe.total)/baseline, "ratio")
		// The same after the first progress: without group join, topic
		// checks and the first fetch, which both pay once.
		baseWarm := (rate(base1.total-base1.first) + rate(base2.total-base2.first)) / 2
		b.ReportMetric(rate(pipe.total-pipe.first)/baseWarm, "ratio_after_join")
		b.ReportMetric(peakRSSMiB(), "peak_rss_MiB")
		reportCPU(b, "steady state (per interaction; baseline: raw copy)", cpu2-cpu1, n, (cpu1-cpu0)+(cpu3-cpu2), 2*n)
		b.Logf("steady state, %d interactions: pipeline %s (first progress after %s) = %.0f rec/s; raw transactional copy %s / %s (first progress after %s / %s) = %.0f / %.0f rec/s; ratio %.2f; pipeline transactions %d, aborts %d; peak RSS %.0f MiB (broker, pipeline and baseline in one process)",
			n, pipe.total.Round(time.Millisecond), pipe.first.Round(time.Millisecond), rate(pipe.total),
			base1.total.Round(time.Millisecond), base2.total.Round(time.Millisecond), base1.first.Round(time.Millisecond), base2.first.Round(time.Millisecond),
			rate(base1.total), rate(base2.total), rate(pipe.total)/baseline, pipe.txns, pipe.aborts, peakRSSMiB())
		b.StartTimer()
	}
}

// BenchmarkFanout: one campaign to a business with M contacts spread over
// every partition; deliveries/s from the moment the campaign is published
// until every delivery is committed, and the percentiles of the time from
// the publish to each inbox record (p50_ms, p99_ms), against a raw transactional produce of
// M records of the inbox record's size, in transactions of as many records
// as one of the pipeline's (FanoutChunk per partition). The pipeline also
// writes one changelog record per delivery (the contact's last delivery
// time) and fires by the wall clock (the caught-up check runs every Tick),
// both inside the measured time.
func BenchmarkFanout(b *testing.B) {
	m := *benchContacts
	for range b.N {
		b.StopTimer()
		resetPeakRSS()
		c := newCluster(b, "fanout", int32(*benchParts))
		const biz = "biz-fanout"
		ins, sendAt := fanoutWorkload(m, biz)
		recs := make([]*kgo.Record, len(ins))
		for i := range ins {
			recs[i] = c.interactionRecord(b, &ins[i])
		}
		c.produce(b, recs...)
		recs = nil
		ends := c.offsets(b, c.names.Interactions, false)
		resetPeakRSS()
		reg := prometheus.NewRegistry()
		h := startRunnerMetrics(b, c, b.TempDir(), func(cfg *pipeline.Config) {
			cfg.NoDecisions = *benchNoDecisions
			cfg.FanoutChunk = *benchChunk
		}, reg)
		ingest := waitCommitted(b, c, c.group, ends, time.Now(), h.alive)
		ingestRSS := peakRSSMiB()
		b.Logf("ingested %d contacts of %s in %s (%.0f rec/s, first progress after %s)", m, biz, ingest.total.Round(time.Millisecond),
			float64(m)/ingest.total.Seconds(), ingest.first.Round(time.Millisecond))

		if *benchSettle > 0 {
			time.Sleep(*benchSettle) // a pause the flag asks for, not a wait on a condition
		}
		camp := schemas.Campaign{CampaignID: "camp-fanout", BusinessID: biz, Action: schemas.Launch, SendAt: sendAt,
			ExpiresAt: sendAt.Add(365 * 24 * time.Hour), Message: benchMessage}
		crec := c.campaignRecord(b, &camp)
		resetPeakRSS()
		txns0 := h.r.Stats().Transactions.Load()
		phases0 := phaseSums(b, reg)
		b.StartTimer()
		cpu0 := processCPU()
		stopProfile := profilePhase(b, "fanout")
		start := time.Now()
		c.produce(b, crec)
		var firstAt time.Duration
		for h.r.Stats().Delivered() < int64(m) {
			if err := h.alive(); err != nil {
				b.Fatalf("pipeline stopped during the fan-out: %v", err)
			}
			if firstAt == 0 && h.r.Stats().Delivered() > 0 {
				firstAt = time.Since(start)
			}
			if time.Since(start) > 10*time.Minute {
				b.Fatalf("fan-out of %d contacts: %d delivered after 10 minutes", m, h.r.Stats().Delivered())
			}
			time.Sleep(5 * time.Millisecond) // a sampling interval, not an assertion
		}
		pipe := time.Since(start)
		stopProfile()
		cpu1 := processCPU()
		b.StopTimer()
		fanRSS := peakRSSMiB()
		txns := h.r.Stats().Transactions.Load() - txns0
		phases := phaseSums(b, reg)
		var phaseLine []string
		for _, ph := range []string{"process", "produce", "flush", "end"} {
			phaseLine = append(phaseLine, fmt.Sprintf("%s %s", ph, (phases[ph]-phases0[ph]).Round(time.Millisecond)))
		}
		b.Logf("fan-out: the transactions' phases, summed (sponsor_transaction_phase_seconds; the apply to Pebble runs beside the next transaction): %s",
			strings.Join(phaseLine, ", "))
		h.stop(b)
		decRecs, decBytes := topicVolume(b, c, c.names.Decisions)
		// Publish to inbox: each inbox record's timestamp (set when the
		// pipeline produced it, in its transaction) after the campaign's
		// publish, as BenchmarkScale reports for its 1M fan-out.
		lat := deliveryLatencies(b, c, camp.CampaignID, start)

		// The inbox value of one delivery, to size the baseline's records.
		size := inboxSize(b, c, &camp, userID(0))
		b.StartTimer()
		cpu2 := processCPU()
		base := rawTransactProduce(b, c, m, size, *benchParts*fanoutChunk())
		cpu3 := processCPU()
		b.StopTimer()
		reportCPU(b, "fan-out (per delivery; baseline: raw produce)", cpu1-cpu0, m, cpu3-cpu2, m)

		rate, baseRate := float64(m)/pipe.Seconds(), float64(m)/base.Seconds()
		b.ReportMetric(rate, "deliveries/s")
		b.ReportMetric(baseRate, "baseline_rec/s")
		b.ReportMetric(rate/baseRate, "ratio")
		b.ReportMetric(ingestRSS, "peak_rss_ingest_MiB")
		b.ReportMetric(fanRSS, "peak_rss_fanout_MiB")
		b.ReportMetric(float64(decRecs)/float64(m), "decision_rec/delivery")
		b.ReportMetric(float64(pct(lat, 50).Milliseconds()), "p50_ms")
		b.ReportMetric(float64(pct(lat, 99).Milliseconds()), "p99_ms")
		b.Logf("fan-out: time from the campaign's publish to each of its %d inbox records: p50 %s, p90 %s, p99 %s, max %s",
			len(lat), pct(lat, 50), pct(lat, 90), pct(lat, 99), pct(lat, 100))
		b.ReportMetric(float64(decBytes)/float64(m), "decision_B/delivery")
		b.Logf("decisions topic: %d records, %d bytes of keys and values (%.4f records, %.1f bytes per delivery)", decRecs, decBytes, float64(decRecs)/float64(m), float64(decBytes)/float64(m))
		b.Logf("fan-out to %d contacts: %s (first delivery committed after %s) = %.0f deliveries/s in %d transactions; raw transactional produce of %d records of %d bytes: %s = %.0f rec/s; ratio %.2f; peak RSS during ingest %.0f MiB, during fan-out %.0f MiB",
			m, pipe.Round(time.Millisecond), firstAt.Round(time.Millisecond), rate, txns, m, size, base.Round(time.Millisecond), baseRate, rate/baseRate, ingestRSS, fanRSS)
		b.StartTimer()
	}
}

// BenchmarkRestore: a runner builds the state of M contacts, stops; a second
// runner with an empty state folder starts in the same group and rebuilds
// every task from the changelog. Measured from its start to Ready() (group
// join included); the baseline is a raw read_committed consumer reading the
// whole changelog once (no Pebble).
func BenchmarkRestore(b *testing.B) {
	m := *benchContacts
	for range b.N {
		b.StopTimer()
		c := newCluster(b, "restore", int32(*benchParts))
		ins := steadyWorkload(m, m/2, 1_000)
		recs := make([]*kgo.Record, len(ins))
		for i := range ins {
			recs[i] = c.interactionRecord(b, &ins[i])
		}
		c.produce(b, recs...)
		ends := c.offsets(b, c.names.Interactions, false)
		h := startRunner(b, c, b.TempDir(), nil)
		waitCommitted(b, c, c.group, ends, time.Now(), h.alive)
		h.stop(b)
		changelogEnds := c.offsets(b, c.names.Changelog, false)
		resetPeakRSS()

		b.StartTimer()
		start := time.Now()
		h2 := startRunner(b, c, b.TempDir(), nil)
		for !h2.r.Ready() {
			if err := h2.alive(); err != nil {
				b.Fatalf("restoring runner stopped: %v", err)
			}
			if time.Since(start) > 10*time.Minute {
				b.Fatalf("restore not ready after 10 minutes")
			}
			time.Sleep(5 * time.Millisecond) // a sampling interval, not an assertion
		}
		took := time.Since(start)
		b.StopTimer()
		restored := h2.r.Stats().RestoredRecords.Load()
		rss := peakRSSMiB()
		h2.stop(b)

		b.StartTimer()
		baseN, base := rawReadAll(b, c, c.names.Changelog, changelogEnds)
		b.StopTimer()

		rate, baseRate := float64(restored)/took.Seconds(), float64(baseN)/base.Seconds()
		b.ReportMetric(rate, "restore_rec/s")
		b.ReportMetric(baseRate, "baseline_rec/s")
		b.ReportMetric(rate/baseRate, "ratio")
		b.ReportMetric(took.Seconds(), "s_to_ready")
		b.ReportMetric(rss, "peak_rss_MiB")
		b.Logf("restore: %d changelog records (changelog ends %d) in %s to Ready() = %.0f rec/s; raw read_committed read of %d records: %s = %.0f rec/s; ratio %.2f; peak RSS %.0f MiB",
			restored, sum(changelogEnds), took.Round(time.Millisecond), rate, baseN, base.Round(time.Millisecond), baseRate, rate/baseRate, rss)
		b.StartTimer()
	}
}

// ---- workloads

var benchMessage = schemas.Message{Text: "Our spring sale starts today: 20% off everything in store and online."}

var benchT0 = time.Date(2025, 6, 1, 0, 0, 0, 0, time.UTC)

// steadyWorkload is n interactions of users with businesses, seeded: mostly
// user-initiated (each one reads and writes a contact, the common case),
// some business messages (decoded, no state).
func steadyWorkload(n, users, businesses int) []schemas.Interaction {
	rng := rand.New(rand.NewPCG(5, 5))
	out := make([]schemas.Interaction, n)
	for i := range out {
		k := schemas.UserMessage
		switch x := rng.IntN(10); {
		case x == 7:
			k = schemas.BotStarted
		case x == 8:
			k = schemas.BotCTAClick
		case x == 9:
			k = schemas.BusinessMessage
		}
		out[i] = schemas.Interaction{
			EventID: fmt.Sprintf("ev-%08d", i), UserID: fmt.Sprintf("user-%07d", rng.IntN(users)),
			BusinessID: fmt.Sprintf("biz-%05d", rng.IntN(businesses)), Kind: k,
			OccurredAt: benchT0.Add(time.Duration(i) * time.Millisecond),
		}
	}
	return out
}

// fanoutWorkload is one USER_MESSAGE from each of m users to biz, and a send
// time after all of them (in the wall clock's past, so the campaign fires as
// soon as a caught-up task sees it).
func fanoutWorkload(m int, biz string) ([]schemas.Interaction, time.Time) {
	out := make([]schemas.Interaction, m)
	for i := range out {
		out[i] = schemas.Interaction{EventID: fmt.Sprintf("ev-%08d", i), UserID: fmt.Sprintf("user-%07d", i), BusinessID: biz,
			Kind: schemas.UserMessage, OccurredAt: benchT0.Add(time.Duration(i) * time.Millisecond)}
	}
	return out, benchT0.Add(time.Duration(m)*time.Millisecond + time.Hour)
}

// topicVolume returns the committed records of topic and the bytes of
// their keys and values (before the batches' compression and headers).
func topicVolume(b *testing.B, c *cluster, topic string) (records, bytes int64) {
	b.Helper()
	if topic == "" {
		return 0, 0
	}
	for _, r := range c.readAll(b, topic) {
		records++
		bytes += int64(len(r.Key) + len(r.Value))
	}
	return records, bytes
}

func avgValue(recs []*kgo.Record) int {
	var n int
	for _, r := range recs {
		n += len(r.Value)
	}
	return n / max(len(recs), 1)
}

func inboxSize(b *testing.B, c *cluster, camp *schemas.Campaign, user string) int {
	b.Helper()
	v, err := c.serde.AppendInbox(nil, &schemas.InboxMessage{DeliveryID: policy.DeliveryID(camp.CampaignID, user), UserID: user,
		BusinessID: camp.BusinessID, CampaignID: camp.CampaignID, SentAt: camp.SendAt, Message: camp.Message})
	if err != nil {
		b.Fatal(err)
	}
	return len(v) + len(user) // value and key
}

// progress is how long a consumer group took: until its first committed
// offset and until its committed offsets reached the ends.
type progress struct {
	first, total time.Duration
	txns, aborts int64
}

// waitCommitted samples group's committed offsets on the interactions
// topic every 20ms until they reach ends on every partition, and returns
// the times since start. Committed offsets are read stable (a pending
// transactional commit does not count until its transaction commits).
func waitCommitted(tb testing.TB, c *cluster, group string, ends map[int32]int64, start time.Time, alive func() error) progress {
	tb.Helper()
	var pr progress
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		got, err := c.adm.FetchOffsets(ctx, group)
		cancel()
		if err == nil {
			done, moved := true, false
			for p, end := range ends {
				o, ok := got.Lookup(c.names.Interactions, p)
				if ok && o.Err == nil && o.At > 0 {
					moved = true
				}
				if !ok || o.Err != nil || o.At < end {
					done = false
				}
			}
			if moved && pr.first == 0 {
				pr.first = time.Since(start)
			}
			if done {
				pr.total = time.Since(start)
				return pr
			}
		}
		if alive != nil {
			if err := alive(); err != nil {
				tb.Fatalf("stopped before reaching the end offsets %v: %v", ends, err)
			}
		}
		if time.Since(start) > 15*time.Minute {
			tb.Fatalf("group %s did not reach the end offsets %v in 15 minutes (last error %v)", group, ends, err)
		}
		time.Sleep(20 * time.Millisecond) // a sampling interval, not an assertion
	}
}

// runPipelineUntil runs the pipeline with a fresh state folder in group
// until its committed offsets reach ends, then stops it.
func runPipelineUntil(b *testing.B, c *cluster, group string, ends map[int32]int64) progress {
	b.Helper()
	start := time.Now()
	h := startRunner(b, c, b.TempDir(), func(cfg *pipeline.Config) {
		cfg.Group = group
		cfg.MaxPollRecords = benchPoll()
	})
	pr := waitCommitted(b, c, group, ends, start, h.alive)
	pr.txns, pr.aborts = h.r.Stats().Transactions.Load(), h.r.Stats().Aborts.Load()
	b.StopTimer()
	h.stop(b)
	b.StartTimer()
	return pr
}

// rawTransactCopy is the steady state's baseline: a GroupTransactSession
// that consumes the interactions (read_committed, as the pipeline) in polls
// of the pipeline's MaxPollRecords (benchPoll) and produces each record, key and
// value untouched, to the same partition of its own topic, one transaction
// per poll with the offsets. No decode, no state.
func rawTransactCopy(b *testing.B, c *cluster, group string, ends map[int32]int64) progress {
	b.Helper()
	dst := group + "-copy"
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	b.StopTimer()
	if _, err := c.adm.CreateTopic(ctx, c.parts, -1, nil, dst); err != nil {
		b.Fatalf("create %s: %v", dst, err)
	}
	b.StartTimer()
	start := time.Now()
	var sess *kgo.GroupTransactSession
	var err error
	pprof.Do(context.Background(), pprof.Labels("bench", "baseline"), func(context.Context) {
		sess, err = kgo.NewGroupTransactSession(
			kgo.SeedBrokers(c.brokers...),
			kgo.ConsumerGroup(group),
			kgo.ConsumeTopics(c.names.Interactions),
			kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
			kgo.FetchIsolationLevel(kgo.ReadCommitted()),
			kgo.RequireStableFetchOffsets(),
			kgo.BlockRebalanceOnPoll(),
			kgo.SessionTimeout(10*time.Second),
			kgo.RecordPartitioner(kgo.ManualPartitioner()),
			kgo.ProducerLinger(5*time.Millisecond),
			kgo.MetadataMinAge(250*time.Millisecond), // as the pipeline's: a retried produce does not wait 5 s
			kgo.TransactionalID(group+"-txn"),
			kgo.TransactionTimeout(20*time.Second),
		)
	})
	if err != nil {
		b.Fatalf("raw session: %v", err)
	}
	var (
		wg      sync.WaitGroup
		loopErr error
		stop    = make(chan struct{})
	)
	wg.Go(func() {
		pprof.SetGoroutineLabels(pprof.WithLabels(context.Background(), pprof.Labels("bench", "baseline")))
		for {
			select {
			case <-stop:
				return
			default:
			}
			pctx, pcancel := context.WithTimeout(ctx, 250*time.Millisecond)
			fs := sess.PollRecords(pctx, benchPoll())
			pcancel()
			if fs.Empty() {
				sess.AllowRebalance()
				continue
			}
			if err := sess.Begin(); err != nil {
				loopErr = err
				sess.AllowRebalance()
				return
			}
			fs.EachRecord(func(r *kgo.Record) {
				sess.Produce(ctx, &kgo.Record{Topic: dst, Partition: r.Partition, Key: r.Key, Value: r.Value}, nil)
			})
			_, err := sess.End(ctx, kgo.TryCommit)
			sess.AllowRebalance()
			if err != nil {
				loopErr = err
				return
			}
		}
	})
	alive := func() error { return loopErr }
	pr := waitCommitted(b, c, group, ends, start, alive)
	b.StopTimer()
	close(stop)
	wg.Wait()
	sess.Close()
	b.StartTimer()
	return pr
}

// rawTransactProduce is the fan-out's baseline: a transactional producer
// writes n records of size bytes (key and value), spread over the
// partitions, per transactions of txn records, and commits.
func rawTransactProduce(b *testing.B, c *cluster, n, size, txn int) time.Duration {
	b.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	dst := fmt.Sprintf("%sraw-produce-%d", c.prefix, time.Now().UnixNano())
	b.StopTimer()
	if _, err := c.adm.CreateTopic(ctx, c.parts, -1, nil, dst); err != nil {
		b.Fatalf("create %s: %v", dst, err)
	}
	keys := make([][]byte, n)
	for i := range keys {
		keys[i] = []byte(fmt.Sprintf("user-%07d", i))
	}
	value := bytes.Repeat([]byte{'x'}, max(size-len(keys[0]), 1))
	b.StartTimer()
	start := time.Now()
	cl, err := kgo.NewClient(kgo.SeedBrokers(c.brokers...), kgo.TransactionalID(dst+"-txn"), kgo.TransactionTimeout(20*time.Second),
		kgo.RecordPartitioner(kgo.ManualPartitioner()), kgo.ProducerLinger(5*time.Millisecond),
		kgo.MetadataMinAge(250*time.Millisecond)) // as the pipeline's: a retried produce does not wait 5 s
	if err != nil {
		b.Fatal(err)
	}
	defer cl.Close()
	var perr error
	var mu sync.Mutex
	for i := 0; i < n; {
		if err := cl.BeginTransaction(); err != nil {
			b.Fatal(err)
		}
		for j := 0; j < txn && i < n; j, i = j+1, i+1 {
			cl.Produce(ctx, &kgo.Record{Topic: dst, Partition: int32(i % int(c.parts)), Key: keys[i], Value: value}, func(_ *kgo.Record, err error) {
				if err != nil {
					mu.Lock()
					perr = err
					mu.Unlock()
				}
			})
		}
		if err := cl.Flush(ctx); err != nil {
			b.Fatal(err)
		}
		if err := cl.EndTransaction(ctx, kgo.TryCommit); err != nil {
			b.Fatal(err)
		}
	}
	took := time.Since(start)
	if perr != nil {
		b.Fatalf("raw produce: %v", perr)
	}
	return took
}

// rawReadAll is the restore's baseline: a read_committed consumer reading
// topic from the start to ends, as the restore does, with nothing done per
// record. It returns the data records read and the time.
func rawReadAll(b *testing.B, c *cluster, topic string, ends map[int32]int64) (int64, time.Duration) {
	b.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	start := time.Now()
	var n int64
	rd := kafkaconn.Reader{Opts: []kgo.Opt{kgo.SeedBrokers(c.brokers...)}, Topics: map[string][]int32{topic: slices.Collect(maps.Keys(ends))}, Ends: map[string]map[int32]int64{topic: ends}}
	if err := rd.Read(ctx, func(*kgo.Record) error { n++; return nil }); err != nil {
		b.Fatalf("read %s: %v", topic, err)
	}
	return n, time.Since(start)
}

// ---- memory

// processCPU is the CPU time (user and system) the process used so far.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// reportCPU reports the process's CPU time per record of the pipeline's
// phase (pipe over pipeN records) and of its baseline's (base over baseN),
// and their ratio (baseline over pipeline: higher is better, as for the
// rates). CPU time is steadier than the rates on a shared machine: another
// tenant's load slows a run but does not add to its CPU time. It is the
// whole process's (with kfake, the broker's too; Pebble's compactions of the
// pipeline's state may run on into a later phase). what names the unit.
func reportCPU(b *testing.B, what string, pipe time.Duration, pipeN int, base time.Duration, baseN int) {
	b.Helper()
	pipeCPU := pipe.Seconds() * 1e6 / float64(pipeN)
	baseCPU := base.Seconds() * 1e6 / float64(baseN)
	b.ReportMetric(pipeCPU, "pipeline_cpu_us/rec")
	b.ReportMetric(baseCPU, "baseline_cpu_us/rec")
	b.ReportMetric(baseCPU/pipeCPU, "cpu_ratio")
	b.Logf("%s, CPU of this process: pipeline %.2f us per record, baseline %.2f us per record; cpu ratio %.2f", what, pipeCPU, baseCPU, baseCPU/pipeCPU)
}

// resetPeakRSS resets the kernel's peak RSS of the process (VmHWM), so the
// next peakRSSMiB is the peak since now. Best effort: it needs Linux >= 4.0.
func resetPeakRSS() {
	runtime.GC()
	_ = os.WriteFile("/proc/self/clear_refs", []byte("5"), 0)
}

// peakRSSMiB returns VmHWM from /proc/self/status in MiB (0 if unknown).
func peakRSSMiB() float64 {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return 0
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	for s.Scan() {
		if rest, ok := strings.CutPrefix(s.Text(), "VmHWM:"); ok {
			kb, err := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 64)
			if err != nil {
				return 0
			}
			return kb / 1024
		}
	}
	return 0
}
