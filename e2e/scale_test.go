package e2e

import (
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sponsored/sponsor/schemas"
)

var (
	scaleContacts     = flagInt("bench.scale.contacts", 10_000_000, "contacts BenchmarkScale builds (one interaction each)")
	scaleFanout       = flagInt("bench.scale.fanout", 1_000_000, "of them, the contacts of the one business BenchmarkScale's campaign fans out to")
	scaleInteractions = flagInt("bench.scale.interactions", 2_000_000, "interactions each group of BenchmarkScale's 1, 2 and 3 instances processes")
)

// BenchmarkScale measures `sponsor run` as its own process (so its RSS is
// the pipeline's alone) against a real Kafka (KAFKA_BROKERS; it is skipped
// on kfake, whose topics would live in this process):
//
//  1. ingest: M contacts (one USER_MESSAGE each, F of them to one business),
//     pre-produced, processed by one instance from an empty state; the rate,
//     and the instance's peak RSS (VmHWM);
//  2. fan-out: one campaign of that business to its F contacts, from the
//     publish to the last delivery committed (inbox last stable offsets);
//  3. restore: SIGTERM, the state folder deleted, a new start: the time to
//     /readyz 200 and the changelog records restored, and the peak RSS of
//     that incarnation;
//  4. scale: N interactions processed from the start by a new group of 1,
//     then 2, then 3 instances, each group timed from its start until its
//     committed offsets reach the end.
//
// All on one machine: the broker, the instances and this process share its
// cores, so the scale figures say what this machine gives, not what more
// machines would. Nothing here asserts a time.
//
//	make kafka-up
//	KAFKA_BROKERS=127.0.0.1:9092 go test -run '^$' -bench Scale -benchtime 1x -timeout 60m ./e2e/
func BenchmarkScale(b *testing.B) {
	if os.Getenv("KAFKA_BROKERS") == "" {
		b.Skip("BenchmarkScale needs a real Kafka (KAFKA_BROKERS): on kfake the topics would be in this process's memory")
	}
	m, f, n := *scaleContacts, *scaleFanout, *scaleInteractions
	for range b.N {
		b.StopTimer()
		c := newCluster(b, "scale", int32(*benchParts))
		start := time.Now()
		const big = "biz-big"
		sendAt := benchT0.Add(time.Duration(m)*time.Millisecond + time.Hour)
		produceChunked(b, c, m, func(i int) schemas.Interaction {
			biz := big
			if i >= f {
				biz = fmt.Sprintf("biz-%05d", i%20_000)
			}
			return schemas.Interaction{EventID: fmt.Sprintf("ev-%09d", i), UserID: fmt.Sprintf("user-%09d", i), BusinessID: biz,
				Kind: schemas.UserMessage, OccurredAt: benchT0.Add(time.Duration(i) * time.Millisecond)}
		})
		ends := c.offsets(b, c.names.Interactions, false)
		b.Logf("pre-produced %d interactions (%d to %s) on %d partitions in %s", m, f, big, c.parts, time.Since(start).Round(time.Millisecond))

		logDir := b.TempDir()
		stateDir := filepath.Join(logDir, "state")
		args := []string{"run", "--brokers", strings.Join(c.brokers, ","), "--registry", c.registry, "--topic-prefix", c.prefix,
			"--state-dir", stateDir, "--group", c.group, "--http", "127.0.0.1:0", "--log-level", "info"}
		// 1. ingest.
		t0 := time.Now()
		p := startProc(b, "ingest", args, logDir, 1)
		series := sampleMetrics(p, t0)
		pr := waitCommitted(b, c, c.group, ends, t0, p.exited)
		ingestRSS := vmHWM(p)
		b.ReportMetric(float64(m)/pr.total.Seconds(), "ingest_rec/s")
		b.ReportMetric(ingestRSS, "ingest_peak_rss_MiB")
		b.Logf("ingest: %d interactions in %s (first commit after %s) = %.0f rec/s; peak RSS %.0f MiB",
			m, pr.total.Round(time.Millisecond), pr.first.Round(time.Millisecond), float64(m)/pr.total.Seconds(), ingestRSS)

		// 2. fan-out.
		camp := schemas.Campaign{CampaignID: "camp-scale", BusinessID: big, Action: schemas.Launch, SendAt: sendAt,
			ExpiresAt: sendAt.Add(365 * 24 * time.Hour), Message: schemas.Message{Text: "scale"}}
		t1 := time.Now()
		c.produce(b, c.campaignRecord(b, &camp))
		for {
			// Deliveries are counted once their transaction committed.
			got := int64(scrapeCounters(metricsURL(p))["sponsor_deliveries_total"])
			if got >= int64(f) {
				break
			}
			if err := p.exited(); err != nil {
				b.Fatalf("fan-out: %v", err)
			}
			if time.Since(t1) > 15*time.Minute {
				b.Fatalf("fan-out: %d of %d inbox records after 15 minutes", got, f)
			}
			time.Sleep(50 * time.Millisecond) // a sampling interval, not an assertion
		}
		fan := time.Since(t1)
		fanRSS := vmHWM(p)
		time.Sleep(600 * time.Millisecond) // one more sample after the end
		samples := series.stop()
		lat := deliveryLatencies(b, c, camp.CampaignID, t1)
		b.ReportMetric(float64(f)/fan.Seconds(), "fanout_deliveries/s")
		b.ReportMetric(fanRSS, "peak_rss_MiB")
		b.Logf("fan-out: %d deliveries committed %s after the campaign's publish = %.0f deliveries/s (with decisions: a decision record per candidate); peak RSS over ingest and fan-out %.0f MiB",
			f, fan.Round(time.Millisecond), float64(f)/fan.Seconds(), fanRSS)
		b.Logf("fan-out: time from the campaign's publish to each inbox record (its timestamp, set when produced in the transaction): p50 %s, p90 %s, p99 %s, max %s",
			pct(lat, 50), pct(lat, 90), pct(lat, 99), pct(lat, 100))
		if dir := os.Getenv("BENCH_OUT"); dir != "" {
			writeSeries(b, filepath.Join(dir, "scale-throughput.csv"), samples, t1.Sub(t0))
			writeLatencies(b, filepath.Join(dir, "scale-fanout-latency.csv"), lat)
			b.Logf("wrote %s/scale-throughput.csv and scale-fanout-latency.csv (plot: make plots BENCH_OUT=%s)", dir, dir)
		}
		p.term(b)

		// 3. restore into an empty state folder.
		if err := os.RemoveAll(stateDir); err != nil {
			b.Fatal(err)
		}
		p = startProc(b, "restore", args, logDir, 2)
		ready := waitReady(b, p, 15*time.Minute)
		restoreRSS := vmHWM(p)
		restored := scrapeCounters(metricsURL(p))["sponsor_restored_records_total"]
		b.ReportMetric(ready.Seconds(), "restore_ready_s")
		b.ReportMetric(restored/ready.Seconds(), "restore_rec/s")
		b.ReportMetric(restoreRSS, "restore_peak_rss_MiB")
		b.Logf("restore: %.0f changelog records, /readyz 200 after %s from the start = %.0f rec/s; peak RSS %.0f MiB",
			restored, ready.Round(time.Millisecond), restored/ready.Seconds(), restoreRSS)
		p.term(b)

		// 4. scale: 1, 2, 3 instances, each a new group (its own
		// changelog) over n interactions of their own topics.
		cs := newCluster(b, "scale-n", int32(*benchParts))
		produceChunked(b, cs, n, func(i int) schemas.Interaction {
			return schemas.Interaction{EventID: fmt.Sprintf("ev-%09d", i), UserID: fmt.Sprintf("user-%07d", i%1_000_000),
				BusinessID: fmt.Sprintf("biz-%05d", (i*7919)%20_000), Kind: schemas.UserMessage, OccurredAt: benchT0.Add(time.Duration(i) * time.Millisecond)}
		})
		nEnds := cs.offsets(b, cs.names.Interactions, false)
		var base float64
		for k := 1; k <= 3; k++ {
			group := fmt.Sprintf("%s-%d", cs.group, k)
			t3 := time.Now()
			var procs []*proc
			for i := range k {
				a := []string{"run", "--brokers", strings.Join(cs.brokers, ","), "--registry", cs.registry, "--topic-prefix", cs.prefix,
					"--state-dir", filepath.Join(logDir, fmt.Sprintf("scale%d-%d", k, i)), "--group", group, "--http", "127.0.0.1:0", "--log-level", "info"}
				procs = append(procs, startProc(b, fmt.Sprintf("scale%d-%d", k, i), a, logDir, 10*k+i))
			}
			alive := func() error {
				for _, q := range procs {
					if err := q.exited(); err != nil {
						return err
					}
				}
				return nil
			}
			sp := waitCommitted(b, cs, group, nEnds, t3, alive)
			rate := float64(n) / sp.total.Seconds()
			if k == 1 {
				base = rate
			}
			b.ReportMetric(rate, fmt.Sprintf("scale%d_rec/s", k))
			b.Logf("scale: %d instance(s), %d interactions in %s (first commit after %s) = %.0f rec/s, %.2fx one instance",
				k, n, sp.total.Round(time.Millisecond), sp.first.Round(time.Millisecond), rate, rate/base)
			for _, q := range procs {
				q.term(b)
			}
		}
		b.StartTimer()
	}
}

// produceChunked produces m interactions made by gen, in chunks, so that
// they are never all in memory.
func produceChunked(b *testing.B, c *cluster, m int, gen func(i int) schemas.Interaction) {
	b.Helper()
	const chunk = 100_000
	for lo := 0; lo < m; lo += chunk {
		recs := make([]*kgo.Record, 0, min(chunk, m-lo))
		for i := lo; i < min(lo+chunk, m); i++ {
			in := gen(i)
			recs = append(recs, c.interactionRecord(b, &in))
		}
		c.produce(b, recs...)
	}
}

// vmHWM returns the peak RSS of a process in MiB (VmHWM), 0 if unknown.
func vmHWM(p *proc) float64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", p.cmd.Process.Pid))
	if err != nil {
		return 0
	}
	for _, l := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(l, "VmHWM:") {
			f := strings.Fields(l)
			if len(f) >= 2 {
				kb, _ := strconv.ParseFloat(f[1], 64)
				return kb / 1024
			}
		}
	}
	return 0
}

// waitReady polls an instance's /readyz until it answers 200 and returns
// the time since the process started.
func waitReady(b *testing.B, p *proc, limit time.Duration) time.Duration {
	b.Helper()
	start := time.Now()
	cl := http.Client{Timeout: time.Second}
	for {
		if u := metricsURL(p); u != "" {
			if resp, err := cl.Get(strings.TrimSuffix(u, "/metrics") + "/readyz"); err == nil {
				resp.Body.Close()
				if resp.StatusCode == http.StatusOK {
					return time.Since(start)
				}
			}
		}
		if err := p.exited(); err != nil {
			b.Fatalf("waiting for /readyz: %v", err)
		}
		if time.Since(start) > limit {
			b.Fatalf("/readyz not 200 after %s", limit)
		}
		time.Sleep(20 * time.Millisecond) // a sampling interval, not an assertion
	}
}

// metricSample is one scrape of an instance's counters.
type metricSample struct {
	at                       time.Duration // since the phase's start
	interactions, deliveries float64
}

type sampler struct {
	stopCh chan struct{}
	done   chan []metricSample
}

// sampleMetrics scrapes p's /metrics every 250ms until stop.
func sampleMetrics(p *proc, start time.Time) *sampler {
	s := &sampler{stopCh: make(chan struct{}), done: make(chan []metricSample, 1)}
	go func() {
		var out []metricSample
		tick := time.NewTicker(250 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-s.stopCh:
				s.done <- out
				return
			case <-tick.C:
			}
			if m := scrapeCounters(metricsURL(p)); m != nil {
				out = append(out, metricSample{at: time.Since(start), interactions: m["sponsor_interactions_total"], deliveries: m["sponsor_deliveries_total"]})
			}
		}
	}()
	return s
}

func (s *sampler) stop() []metricSample {
	close(s.stopCh)
	return <-s.done
}

// deliveryLatencies reads the campaign's inbox records and returns, sorted,
// the time from the campaign's publish to each record's timestamp.
func deliveryLatencies(b *testing.B, c *cluster, campaign string, published time.Time) []time.Duration {
	b.Helper()
	var out []time.Duration
	for _, r := range c.readAll(b, c.names.Inbox) {
		m, err := c.serde.DecodeInbox(r.Value)
		if err != nil || m.CampaignID != campaign {
			continue
		}
		out = append(out, r.Timestamp.Sub(published))
	}
	slices.Sort(out)
	return out
}

// pct returns the q-th percentile of sorted durations.
func pct(sorted []time.Duration, q int) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := min(len(sorted)-1, len(sorted)*q/100)
	return sorted[i].Round(time.Millisecond)
}

func writeSeries(b *testing.B, path string, ss []metricSample, fanoutAt time.Duration) {
	var sb strings.Builder
	sb.WriteString("seconds,interactions_total,deliveries_total,phase\n")
	for _, s := range ss {
		phase := "ingest"
		if s.at >= fanoutAt {
			phase = "fanout"
		}
		fmt.Fprintf(&sb, "%.3f,%.0f,%.0f,%s\n", s.at.Seconds(), s.interactions, s.deliveries, phase)
	}
	if err := os.WriteFile(path, []byte(sb.String()), 0o644); err != nil {
		b.Fatal(err)
	}
}

func writeLatencies(b *testing.B, path string, sorted []time.Duration) {
	var sb strings.Builder
	sb.WriteString("percentile,seconds\n")
	for q := 0; q <= 100; q++ {
		if len(sorted) == 0 {
			break
		}
		i := min(len(sorted)-1, len(sorted)*q/100)
		fmt.Fprintf(&sb, "%d,%.4f\n", q, sorted[i].Seconds())
	}
	if err := os.WriteFile(path, []byte(sb.String()), 0o644); err != nil {
		b.Fatal(err)
	}
}
