package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sponsored/sponsor/schemas"
)

var standbyContacts = flagInt("bench.standby.contacts", 10_000_000, "contacts BenchmarkStandbyFailover builds (one interaction each)")

// BenchmarkStandbyFailover measures the failover of a partition whose
// owner dies for good, with and without a warm standby, in the same run,
// against a real Kafka (KAFKA_BROKERS; skipped on kfake):
//
//	M contacts (one USER_MESSAGE each) pre-produced; for standby replicas
//	1, then 0, a new group of two `sponsor run` instances a and b
//	(--session-timeout 6s) processes them; once both are committed to the
//	end (and, with a standby, b's followers have caught up), a is
//	SIGKILLed and not restarted, one interaction is produced to every
//	partition, and the time from the kill until the group's committed
//	offsets pass them on every partition (a's included: b has restored and
//	processed them) is the failover time.
//
// It also reports the changelog records b's restore of a's partitions
// read (sponsor_restored_records_total). Nothing here asserts a time; the
// target (with a standby, under the session timeout + 2 s) is judged from
// the figures.
//
//	SPONSOR_KAFKA_PORT=29092 ... deploy/kafka/up.sh
//	KAFKA_BROKERS=127.0.0.1:29092 go test -run '^$' -bench StandbyFailover -benchtime 1x -bench.standby.contacts 1000000 -timeout 60m ./e2e/
func BenchmarkStandbyFailover(b *testing.B) {
	if os.Getenv("KAFKA_BROKERS") == "" {
		b.Skip("BenchmarkStandbyFailover needs a real Kafka (KAFKA_BROKERS)")
	}
	m := *standbyContacts
	for range b.N {
		b.StopTimer()
		c := newCluster(b, "failover", int32(*benchParts))
		start := time.Now()
		produceChunked(b, c, m, func(i int) schemas.Interaction {
			return schemas.Interaction{EventID: fmt.Sprintf("ev-%09d", i), UserID: fmt.Sprintf("user-%09d", i), BusinessID: fmt.Sprintf("biz-%05d", i%20_000),
				Kind: schemas.UserMessage, OccurredAt: benchT0.Add(time.Duration(i) * time.Millisecond)}
		})
		b.Logf("pre-produced %d interactions on %d partitions in %s", m, c.parts, time.Since(start).Round(time.Millisecond))
		var with time.Duration
		for _, replicas := range []int{1, 0} {
			took, restored := failover(b, c, replicas, m)
			label := "standby"
			if replicas == 0 {
				label = "nostandby"
			} else {
				with = took
			}
			b.ReportMetric(took.Seconds(), "failover_"+label+"_s")
			b.ReportMetric(restored, "restored_"+label+"_records")
			if replicas == 0 && with > 0 {
				b.ReportMetric(with.Seconds()/took.Seconds(), "ratio")
			}
		}
		b.StartTimer()
	}
}

// failover runs one round of BenchmarkStandbyFailover with the given
// standby replicas and returns the failover time and the changelog
// records the survivor's restore read.
func failover(b *testing.B, c *cluster, replicas, m int) (time.Duration, float64) {
	b.Helper()
	group := fmt.Sprintf("%sfailover-standby%d", c.prefix, replicas)
	logDir := b.TempDir()
	procs := map[string]*proc{}
	for i, n := range []string{"a", "b"} {
		args := []string{"run", "--brokers", strings.Join(c.brokers, ","), "--registry", c.registry, "--topic-prefix", c.prefix,
			"--state-dir", filepath.Join(logDir, n), "--group", group, "--instance-id", n, "--http", "127.0.0.1:0",
			"--session-timeout", "6s", "--standby-replicas", strconv.Itoa(replicas), "--log-level", "info"}
		procs[n] = startProc(b, n, args, logDir, i+1)
	}
	alive := func() error {
		for _, p := range procs {
			if err := p.exited(); err != nil {
				return err
			}
		}
		return nil
	}
	t0 := time.Now()
	ends := c.offsets(b, c.names.Interactions, false)
	pr := waitCommitted(b, c, group, ends, t0, alive)
	b.Logf("standby replicas %d: %d interactions processed by a and b in %s", replicas, m, pr.total.Round(time.Millisecond))
	if replicas > 0 {
		// Wait for the followers to catch up: each instance follows the
		// other's partitions, and none is behind.
		deadline := time.Now().Add(15 * time.Minute)
		for {
			na, nb := standbys(procs["a"]), standbys(procs["b"])
			lag := metricSum(metricsURL(procs["a"]), "sponsor_standby_lag_records") + metricSum(metricsURL(procs["b"]), "sponsor_standby_lag_records")
			if na > 0 && nb > 0 && na+nb == int(c.parts) && lag == 0 {
				break
			}
			if err := alive(); err != nil {
				b.Fatal(err)
			}
			if time.Now().After(deadline) {
				b.Fatalf("standbys a %d, b %d, lag %v after 15 minutes", na, nb, lag)
			}
			time.Sleep(100 * time.Millisecond) // a sampling interval, not an assertion
		}
		b.Logf("standby replicas %d: standbys caught up %s after the start", replicas, time.Since(t0).Round(time.Millisecond))
	}
	members := groupMembersOf(b, c, group)
	before := scrapeCounters(metricsURL(procs["b"]))["sponsor_restored_records_total"]
	kill := time.Now()
	procs["a"].kill(b)
	// One more interaction on every partition: processed on a's once b
	// has restored them.
	var recs []*kgo.Record
	for p := range c.parts {
		for i := 0; ; i++ {
			u := fmt.Sprintf("probe-%d-%d", replicas, i)
			if userPartition(u, c.parts) == p {
				in := schemas.Interaction{EventID: "ev-" + u, UserID: u, BusinessID: "biz-probe", Kind: schemas.UserMessage,
					OccurredAt: benchT0.Add(time.Duration(m+1) * time.Millisecond)}
				recs = append(recs, c.interactionRecord(b, &in))
				break
			}
		}
	}
	c.produce(b, recs...)
	after := c.offsets(b, c.names.Interactions, false)
	survivor := procs["b"]
	took := waitCommitted(b, c, group, after, kill, survivor.exited).total
	restored := scrapeCounters(metricsURL(survivor))["sponsor_restored_records_total"] - before
	b.Logf("standby replicas %d: a (partitions %v) SIGKILLed; every partition processing again %s later; b's restore read %.0f changelog records",
		replicas, members["a"], took.Round(time.Millisecond), restored)
	// What b did after the kill, for the breakdown of the failover time.
	// (go test cuts a benchmark's log after a few lines: they go to
	// BENCH_OUT when it is set.)
	if dir := os.Getenv("BENCH_OUT"); dir != "" {
		out := filepath.Join(dir, fmt.Sprintf("failover-standby%d.log", replicas))
		if err := os.WriteFile(out, []byte(strings.Join(linesSince(b, survivor.log, kill, 40), "\n")+"\n"), 0o644); err != nil {
			b.Fatal(err)
		}
	}
	survivor.term(b)
	return took, restored
}

// groupMembersOf is cluster.groupMembers for another group than c's.
func groupMembersOf(b *testing.B, c *cluster, group string) map[string][]int32 {
	b.Helper()
	saved := c.group
	c.group = group
	defer func() { c.group = saved }()
	return c.groupMembers(b)
}

// metricSum returns the sum of every sample of the metric name (all its
// series) at url, -1 if the instance does not answer.
func metricSum(url, name string) float64 {
	body, ok := scrapeText(url)
	if !ok {
		return -1
	}
	var total float64
	for _, l := range strings.Split(body, "\n") {
		f := strings.Fields(l)
		if len(f) == 2 && (f[0] == name || strings.HasPrefix(f[0], name+"{")) {
			if v, err := strconv.ParseFloat(f[1], 64); err == nil {
				total += v
			}
		}
	}
	return total
}

// linesSince returns the first n lines of the log at path logged at or
// after since, each with its time as an offset from since and without the
// instance and group fields.
func linesSince(b *testing.B, path string, since time.Time, n int) []string {
	b.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		b.Fatal(err)
	}
	var out []string
	for _, l := range strings.Split(string(data), "\n") {
		f := strings.Fields(l)
		if len(f) == 0 || !strings.HasPrefix(f[0], "time=") {
			continue
		}
		at, err := time.Parse(time.RFC3339Nano, strings.TrimPrefix(f[0], "time="))
		if err != nil || at.Before(since) {
			continue
		}
		var keep []string
		for _, w := range f[1:] {
			if !strings.HasPrefix(w, "instance=") && !strings.HasPrefix(w, "group=") {
				keep = append(keep, w)
			}
		}
		out = append(out, fmt.Sprintf("+%s %s", at.Sub(since).Round(time.Millisecond), strings.Join(keep, " ")))
		if len(out) == n {
			break
		}
	}
	return out
}
