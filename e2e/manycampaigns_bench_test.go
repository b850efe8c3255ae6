package e2e

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"maps"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sr/srfake"

	"github.com/sponsored/sponsor/deploy/embedded"
	"github.com/sponsored/sponsor/kafkaconn"
	"github.com/sponsored/sponsor/schemas"
)

// The sizes and binaries of BenchmarkManyCampaigns.
var (
	mcBusinesses  = flagInt("bench.camp.businesses", 5_000, "businesses of BenchmarkManyCampaigns' long tail (issue 16: 20000)")
	mcContacts    = flagInt("bench.camp.contacts", 200_000, "contacts of the long tail, Zipf-like over its businesses (issue 16: 1000000)")
	mcLarge       = flagInt("bench.camp.large", 100_000, "contacts of the one large business whose fan-out the probes are published during (issue 16: 100000)")
	mcCampaigns   = flagInt("bench.camp.campaigns", 6_000, "campaigns of the campaign phase (issue 16: 100000)")
	mcRate        = flagInt("bench.camp.rate", 200, "campaigns published a second in the campaign phase")
	mcInterRate   = flagInt("bench.camp.interactions", 500, "interactions of existing contacts produced a second during the campaign phase")
	mcInterLag    = flag.Duration("bench.camp.interactions-lag", 10*time.Second, "how far behind the wall clock the campaign phase's interactions' occurred_at is")
	mcProbes      = flagInt("bench.camp.probes", 20, "~300-contact campaigns published right after the large one")
	mcProbeEvery  = flag.Duration("bench.camp.probe-every", 20*time.Millisecond, "time between two probes")
	mcPast        = flagInt("bench.camp.past", 20_000, "expired campaigns on the campaigns topic at the start-up phases (issue 16: 1000000)")
	mcRounds      = flagInt("bench.rounds", 1, "rounds of BenchmarkManyCampaigns; each runs every binary once, base first")
	mcWarmup      = flag.Bool("bench.warmup", true, "run the first binary once before the measured rounds, its figures dropped")
	mcSponsor     = flag.String("bench.sponsor", "", "the sponsor binary BenchmarkManyCampaigns measures, label new (default: built from this tree)")
	mcSponsorBase = flag.String("bench.sponsor-base", "", "a second sponsor binary to compare with, label base, e.g. built from the previous main (default: none)")
)

// mcExpiry is how long after its send_at a campaign of the phase expires:
// a minute by default, so that the run sees the tasks forget them too.
// Longer than the allowed clock skew (5 minutes), the run cannot move the
// stream time past the expiries: it then counts the changelog only up to
// the phase's end, and its RSS shows what remembering the campaigns costs.
var mcExpiry = flag.Duration("bench.camp.validity", time.Minute, "how long after its send_at a campaign of BenchmarkManyCampaigns' phase expires; over 5m the run skips the expiry (the stream time cannot be moved past it) and its RSS figures show the memory of campaigns remembered until their expiry")

// BenchmarkManyCampaigns (issue 16) measures the pipeline under a stream of
// many campaigns, `sponsor run` as its own process, so that two binaries
// can be compared in one run on one broker: -bench.sponsor (default: built
// from this tree, label "new") and, if given, -bench.sponsor-base (label
// "base"), run interleaved for -bench.rounds (base, new, then new, base,
// ...; after a warm-up run whose figures are dropped, -bench.warmup), each
// on fresh topics. Every figure is reported per label (the unit ends
// in "-base" or "-new") as the mean over the rounds, and as new/base when
// both ran ("-ratio"): the machine is shared and noisy, the ratios are what
// a run says.
//
// One run of a binary:
//
//  1. a long tail of businesses: -bench.camp.businesses with Zipf-like
//     contact counts (business k of the tail has about 1/k of them),
//     -bench.camp.contacts in all, plus one large business of
//     -bench.camp.large contacts; one USER_MESSAGE per contact, produced
//     before the instance starts, which ingests them from an empty state;
//  2. the campaign phase: -bench.camp.campaigns campaigns at
//     -bench.camp.rate a second, each to the next business of a shuffled
//     cycle over the tail (so their sizes follow the tail: most small, a few
//     large), send_at = their publish time (due at once by the wall clock),
//     while interactions of existing contacts flow at
//     -bench.camp.interactions a second; a third of the way in, one
//     campaign of the large business, and right after it
//     -bench.camp.probes campaigns of businesses of about 300 contacts,
//     every -bench.camp.probe-every; the phase ends when every decision the
//     campaigns imply is committed. Figures: campaigns/s and decisions/s;
//     changelog records of campaign keys per campaign per partition, in all
//     and on the partitions with no contact of the campaign's business, up
//     to the point where every task's stream time has passed every
//     campaign's expiry (a minute after send_at), so forgetting counts too;
//     the instance's RSS after a half, three quarters and all of the
//     campaigns were published (after the large fan-out), and its peak; the
//     publish-to-inbox latency (the last inbox
//     record's timestamp minus the campaign record's) of the probes
//     published while the large fan-out ran, and of the other campaigns;
//  3. start-up: the instance stopped (SIGTERM), -bench.camp.past expired
//     campaigns published, and one fresh ~300-contact campaign due at once;
//     a new instance on an empty state folder, then (stopped, another fresh
//     campaign) on that folder again: the time from the process's start to
//     /readyz 200, and to the fresh campaign's last delivery committed.
//
// The inbox is checked against the workload's expectation (each business's
// first campaign reaches every contact once, later ones in the 24 hours
// none): no duplicate, none missing, nothing extra, every field right.
// Nothing asserts a time.
//
//	go test -v -run '^$' -bench ManyCampaigns -benchtime 1x -timeout 60m ./e2e/ \
//		-bench.sponsor-base /tmp/sponsor-base -bench.rounds 2
//
// (-v: the log lines give each run's figures; docs/performance.md, "Many
// campaigns", says what each means.)
func BenchmarkManyCampaigns(b *testing.B) {
	bins := []mcBinary{}
	if *mcSponsorBase != "" {
		bins = append(bins, mcBinary{label: "base", path: *mcSponsorBase})
	}
	newBin := *mcSponsor
	if newBin == "" {
		newBin = sponsorBinary(b)
	}
	bins = append(bins, mcBinary{label: "new", path: newBin})
	for _, bin := range bins {
		if _, err := os.Stat(bin.path); err != nil {
			b.Fatalf("binary %s: %v", bin.label, err)
		}
	}
	env := newMCEnv(b)
	w := newMCWorkload(*mcBusinesses, *mcContacts, *mcLarge, int32(*benchParts), *mcProbes+2)
	b.Logf("workload: %d contacts of %d businesses (largest of the tail %d, median %d; the large business %d), %d users, %d partitions; %d probe businesses of ~300 contacts",
		w.contacts(), len(w.biz), len(w.biz[1].users), len(w.biz[len(w.biz)/2].users), len(w.biz[0].users), w.users, w.parts, len(w.probes))
	for range b.N {
		b.StopTimer()
		figures := map[string][]float64{} // "unit-label" -> one value per round
		if *mcWarmup {
			// A cold broker (the JVM's JIT, kfake's heap) would slow
			// down whichever binary runs first.
			runManyCampaigns(b, env, w, bins[0], -1)
		}
		for round := range *mcRounds {
			order := slices.Clone(bins)
			if round%2 == 1 {
				slices.Reverse(order) // base, new, new, base, ...: neither always runs first
			}
			for _, bin := range order {
				res := runManyCampaigns(b, env, w, bin, round)
				for unit, v := range res {
					figures[unit+"-"+bin.label] = append(figures[unit+"-"+bin.label], v)
				}
			}
		}
		mean := func(xs []float64) float64 {
			var s float64
			for _, x := range xs {
				s += x
			}
			return s / float64(len(xs))
		}
		units := slices.Sorted(maps.Keys(figures))
		for _, k := range units {
			b.ReportMetric(mean(figures[k]), k)
		}
		if len(bins) == 2 {
			for _, k := range units {
				unit, ok := strings.CutSuffix(k, "-new")
				if !ok {
					continue
				}
				if base := mean(figures[unit+"-base"]); base != 0 {
					b.ReportMetric(mean(figures[k])/base, unit+"-ratio")
				}
			}
		}
		b.StartTimer()
	}
}

// mcBinary is one sponsor binary under measure.
type mcBinary struct{ label, path string }

// mcEnv is the broker and registry every run of the benchmark shares: the
// embedded kfake (listening on 127.0.0.1 so the subprocess reaches it) or
// the real Kafka of KAFKA_BROKERS with an in-process registry.
type mcEnv struct {
	brokers  []string
	registry string
	real     bool
}

func newMCEnv(b *testing.B) *mcEnv {
	b.Helper()
	if brokers := os.Getenv("KAFKA_BROKERS"); brokers != "" {
		reg := srfake.New()
		b.Cleanup(reg.Close)
		return &mcEnv{brokers: strings.Split(brokers, ","), registry: reg.URL(), real: true}
	}
	stack, err := embedded.Start(embedded.Options{})
	if err != nil {
		b.Fatalf("start embedded stack: %v", err)
	}
	b.Cleanup(func() { stack.Close() })
	return &mcEnv{brokers: stack.Brokers, registry: stack.RegistryURL}
}

// cluster creates the topics of one run, under a prefix of its own, and
// deletes them when the run's figures are taken (drop).
func (e *mcEnv) cluster(b *testing.B, name string, parts int32) (c *cluster, drop func()) {
	b.Helper()
	ctx := testContext(b, time.Minute)
	prefix := fmt.Sprintf("mc-%d-%s-", time.Now().UnixNano(), name)
	c = &cluster{brokers: e.brokers, registry: e.registry, prefix: prefix, group: prefix + "sponsor", parts: parts}
	c.connect(b, ctx)
	var once sync.Once
	drop = func() {
		once.Do(func() {
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			// The broker's memory (kfake) or disk (Kafka) back for the next run.
			if _, err := c.adm.DeleteTopics(ctx, c.names.Interactions, c.names.Campaigns, c.names.Inbox, c.names.DeadLetter, c.names.Changelog, c.names.Decisions); err != nil {
				b.Logf("delete the run's topics: %v", err)
			}
			c.cl.Close()
		})
	}
	b.Cleanup(drop)
	return c, drop
}

// mcBusiness is one business of the workload and its contacts.
type mcBusiness struct {
	id    string
	users []int32 // user indexes
	parts uint64  // bit p: the business has a contact on partition p
}

// mcWorkload is the businesses, their contacts and the campaign targets.
type mcWorkload struct {
	users  int
	parts  int32
	part   []int32      // user index -> its partition
	biz    []mcBusiness // 0: the large business; 1..: the tail, largest first
	probes []int        // businesses of about 300 contacts, reserved for probes
	cycle  []int        // the other businesses of the tail, shuffled: the campaigns' targets in turn
}

func (w *mcWorkload) contacts() int {
	n := 0
	for _, b := range w.biz {
		n += len(b.users)
	}
	return n
}

func mcUser(i int32) string { return fmt.Sprintf("mcu-%07d", i) }

// newMCWorkload builds the tail (business k of n with a share 1/k of the
// contacts, at least one each) and the large business; each business's
// contacts are distinct users, a user a contact of a few businesses.
func newMCWorkload(n, contacts, large int, parts int32, probes int) *mcWorkload {
	w := &mcWorkload{parts: parts, users: max(contacts/2, large, 1000)}
	for w.users%7919 == 0 {
		w.users++
	}
	// user j of the sequence: a permutation of 0..users-1, so that a run
	// of at most users consecutive j are distinct users.
	user := func(j int) int32 { return int32((j*7919 + 104729) % w.users) }
	part := make([]int32, w.users)
	for u := range w.users {
		part[u] = userPartition(mcUser(int32(u)), parts)
	}
	w.part = part
	add := func(id string, from, k int) {
		bz := mcBusiness{id: id, users: make([]int32, k)}
		for i := range k {
			u := user(from + i)
			bz.users[i] = u
			bz.parts |= 1 << part[u]
		}
		w.biz = append(w.biz, bz)
	}
	add("mcb-large", 0, large)
	var h float64
	for k := 1; k <= n; k++ {
		h += 1 / float64(k)
	}
	j := large
	for k := 1; k <= n; k++ {
		cnt := max(1, int(float64(contacts)/(h*float64(k))+0.5))
		add(fmt.Sprintf("mcb-%06d", k), j, cnt)
		j += cnt
	}
	// Probes: the tail's businesses closest to 300 contacts.
	byDist := make([]int, 0, n)
	for i := 1; i < len(w.biz); i++ {
		byDist = append(byDist, i)
	}
	dist := func(i int) int { d := len(w.biz[i].users) - 300; return max(d, -d) }
	slices.SortStableFunc(byDist, func(a, b int) int { return dist(a) - dist(b) })
	w.probes = byDist[:min(probes, len(byDist))]
	for i := 1; i < len(w.biz); i++ {
		if !slices.Contains(w.probes, i) {
			w.cycle = append(w.cycle, i)
		}
	}
	rng := rand.New(rand.NewPCG(16, 3))
	rng.Shuffle(len(w.cycle), func(a, b int) { w.cycle[a], w.cycle[b] = w.cycle[b], w.cycle[a] })
	return w
}

// mcCampaign is a published campaign and what the benchmark knows of it.
type mcCampaign struct {
	c         schemas.Campaign
	biz       int
	kind      string // "small", "large", "probe", "startup"
	published time.Time
	sentAt    time.Time // the time it fires as of: its send_at, or for a late one the tasks' stream time
}

// mcPhase is the campaign phase's published campaigns, in publish order.
type mcPhase struct {
	mu    sync.Mutex
	camps []mcCampaign
	n     atomic.Int64 // campaigns published so far
}

// runManyCampaigns is one run of one binary; it returns its figures by unit.
func runManyCampaigns(b *testing.B, env *mcEnv, w *mcWorkload, bin mcBinary, round int) map[string]float64 {
	name := fmt.Sprintf("r%d-%s", round, bin.label)
	if round < 0 {
		name = "warmup-" + bin.label
	}
	c, drop := env.cluster(b, name, w.parts)
	defer drop()
	res := map[string]float64{}
	runStart := time.Now().UTC().Truncate(time.Millisecond)

	// 1. the contacts, then an instance that ingests them.
	t0 := runStart.Add(-24 * time.Hour)
	type contact struct{ biz, user int32 }
	var all []contact
	for bi, bz := range w.biz {
		for _, u := range bz.users {
			all = append(all, contact{int32(bi), u})
		}
	}
	produceChunked(b, c, len(all), func(i int) schemas.Interaction {
		ct := all[i]
		return schemas.Interaction{EventID: fmt.Sprintf("mce-%08d", i), UserID: mcUser(ct.user), BusinessID: w.biz[ct.biz].id,
			Kind: schemas.UserMessage, OccurredAt: t0.Add(time.Duration(i) * time.Millisecond)}
	})
	ends := c.offsets(b, c.names.Interactions, false)
	logDir := b.TempDir()
	stateDir := filepath.Join(logDir, "state")
	args := []string{"run", "--brokers", strings.Join(c.brokers, ","), "--registry", c.registry, "--topic-prefix", c.prefix,
		"--state-dir", stateDir, "--group", c.group, "--instance-id", "bench", "--http", "127.0.0.1:0", "--log-level", "info"}
	runs := 0
	start := func(what string) *proc {
		runs++
		return startBinary(b, bin.path, what, args, logDir, runs)
	}
	ingestAt := time.Now()
	p := start("ingest")
	pr := waitCommitted(b, c, c.group, ends, ingestAt, p.exited)
	b.Logf("%s: ingested %d contacts in %s (%.0f rec/s; the instance counted %.0f interactions), RSS %.0f MiB", name, len(all), pr.total.Round(time.Millisecond),
		float64(len(all))/pr.total.Seconds(), scrapeCounters(metricsURL(p))["sponsor_interactions_total"], vmRSS(p))

	// 2. the campaign phase.
	chStart := c.offsets(b, c.names.Changelog, true)
	before := scrapeDecisions(metricsURL(p))
	ph := &mcPhase{}
	seq := 0
	newCampaign := func(bi int, kind string, sendAt time.Time) mcCampaign {
		seq++
		id := fmt.Sprintf("camp-%s-%07d", kind[:1], seq)
		// The phase's campaigns expire soon, so that the run sees a task
		// forget them too (see the expiry below); the start-up ones fire
		// late, as of the stream time the expiry moved on.
		expires := sendAt.Add(*mcExpiry)
		if kind == "startup" {
			expires = sendAt.Add(7 * 24 * time.Hour)
		}
		return mcCampaign{biz: bi, kind: kind, sentAt: sendAt, c: schemas.Campaign{CampaignID: id, BusinessID: w.biz[bi].id, Action: schemas.Launch,
			SendAt: sendAt, ExpiresAt: expires, Message: schemas.Message{Text: "many campaigns " + id}}}
	}
	publish := func(cs ...mcCampaign) {
		recs := make([]*kgo.Record, len(cs))
		for i := range cs {
			recs[i] = c.campaignRecord(b, &cs[i].c)
		}
		c.produce(b, recs...)
		ph.mu.Lock()
		for i := range cs {
			cs[i].published = recs[i].Timestamp
			ph.camps = append(ph.camps, cs[i])
		}
		ph.mu.Unlock()
		ph.n.Add(int64(len(cs)))
	}
	k, rate := *mcCampaigns, max(*mcRate, 1)
	ctx, stop := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	// Interactions of existing contacts meanwhile, -bench.camp.interactions-lag
	// (10s) behind the wall clock so the tasks' stream time never passes a
	// campaign's send_at before the campaign is read (each fires as of its
	// send_at). A short lag (100ms) makes most interactions read during a
	// fan-out later than its fire time.
	wg.Add(1)
	go func() {
		defer wg.Done()
		rng := rand.New(rand.NewPCG(uint64(round), 99))
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		begin, sent := time.Now(), 0
		for {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
			due := int(time.Since(begin).Seconds() * float64(*mcInterRate))
			var recs []*kgo.Record
			at := time.Now().UTC().Add(-*mcInterLag).Truncate(time.Millisecond)
			for ; sent < due; sent++ {
				ct := all[rng.IntN(len(all))]
				in := schemas.Interaction{EventID: fmt.Sprintf("mcs-%d-%08d", round, sent), UserID: mcUser(ct.user), BusinessID: w.biz[ct.biz].id,
					Kind: schemas.UserMessage, OccurredAt: at}
				recs = append(recs, c.interactionRecord(b, &in))
			}
			if len(recs) > 0 {
				if err := c.cl.ProduceSync(ctx, recs...).FirstErr(); err != nil && ctx.Err() == nil {
					b.Errorf("produce interactions: %v", err)
					return
				}
			}
		}
	}()
	// RSS samples against the campaigns published.
	type rssSample struct {
		published int64
		mib       float64
	}
	var rssMu sync.Mutex
	var rss []rssSample
	wg.Add(1)
	go func() {
		defer wg.Done()
		tick := time.NewTicker(100 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
			if m := vmRSS(p); m > 0 {
				rssMu.Lock()
				rss = append(rss, rssSample{ph.n.Load(), m})
				rssMu.Unlock()
			}
		}
	}()
	phaseAt := time.Now()
	nextProbe, probesLeft, probeAt := 0, 0, time.Time{}
	for i := 0; i < k; {
		due := min(k, 1+int(time.Since(phaseAt).Seconds()*float64(rate)))
		var batch []mcCampaign
		now := time.Now().UTC().Truncate(time.Millisecond)
		for ; i < due; i++ {
			batch = append(batch, newCampaign(w.cycle[i%len(w.cycle)], "small", now))
			if i == k/3 {
				batch = append(batch, newCampaign(0, "large", now))
				probesLeft, probeAt = *mcProbes, time.Now()
			}
		}
		if probesLeft > 0 && !time.Now().Before(probeAt) && nextProbe < len(w.probes)-2 {
			batch = append(batch, newCampaign(w.probes[nextProbe], "probe", now))
			nextProbe++
			probesLeft--
			probeAt = probeAt.Add(*mcProbeEvery)
		}
		if len(batch) > 0 {
			publish(batch...)
		}
		time.Sleep(2 * time.Millisecond) // the publish schedule's resolution
	}
	for probesLeft > 0 && nextProbe < len(w.probes)-2 {
		time.Sleep(time.Until(probeAt))
		publish(newCampaign(w.probes[nextProbe], "probe", time.Now().UTC().Truncate(time.Millisecond)))
		nextProbe++
		probesLeft--
		probeAt = probeAt.Add(*mcProbeEvery)
	}
	published := time.Since(phaseAt)
	ph.mu.Lock()
	camps := slices.Clone(ph.camps)
	ph.mu.Unlock()
	// What the campaigns imply: a decision per contact of each campaign's
	// business; a delivery for each of the business's first campaign (all
	// within 24 hours, no contact suppressed).
	var wantDecisions int64
	for _, mc := range camps {
		wantDecisions += int64(len(w.biz[mc.biz].users))
	}
	var done time.Duration
	for {
		d := scrapeDecisions(metricsURL(p))
		if d.total()-before.total() >= wantDecisions {
			done = time.Since(phaseAt)
			break
		}
		if err := p.exited(); err != nil {
			b.Fatalf("%s: campaign phase: %v", name, err)
		}
		if time.Since(phaseAt) > 30*time.Minute {
			b.Fatalf("%s: campaign phase: %d of %d decisions after 30 minutes", name, d.total()-before.total(), wantDecisions)
		}
		time.Sleep(50 * time.Millisecond) // a sampling interval, not an assertion
	}
	stop()
	wg.Wait()
	after := scrapeDecisions(metricsURL(p))
	peak := vmHWM(p)
	rssEnd := vmRSS(p)

	// Expiry: one interaction per partition, a second after the last
	// campaign's expiry (ahead of the wall clock by less than the allowed
	// clock skew), moves every task's stream time past every expiry; once
	// it is committed, a task has forgotten what it would.
	var lastExpiry time.Time
	for _, mc := range camps {
		if mc.c.ExpiresAt.After(lastExpiry) {
			lastExpiry = mc.c.ExpiresAt
		}
	}
	tickAt := lastExpiry.Add(time.Second)
	var ticks []*kgo.Record
	for q := range w.parts {
		if *mcExpiry > 5*time.Minute {
			break // no tick: its time would be past the allowed clock skew
		}
		for _, ct := range all {
			if w.part[ct.user] == q {
				in := schemas.Interaction{EventID: fmt.Sprintf("mct-%d", q), UserID: mcUser(ct.user), BusinessID: w.biz[ct.biz].id, Kind: schemas.UserMessage, OccurredAt: tickAt}
				ticks = append(ticks, c.interactionRecord(b, &in))
				break
			}
		}
	}
	c.produce(b, ticks...)
	expiryAt := time.Now()
	waitCommitted(b, c, c.group, c.offsets(b, c.names.Interactions, false), expiryAt, p.exited)
	chEnd := c.offsets(b, c.names.Changelog, true)
	res["campaigns/s"] = float64(len(camps)) / done.Seconds()
	res["decisions/s"] = float64(after.total()-before.total()) / done.Seconds()
	res["phase_s"] = done.Seconds()
	b.Logf("%s: %d campaigns published in %s, every decision committed after %s: %.1f campaigns/s, %.0f decisions/s (%d deliveries, %d suppressions)",
		name, len(camps), published.Round(time.Millisecond), done.Round(time.Millisecond), res["campaigns/s"], res["decisions/s"],
		after.deliveries-before.deliveries, after.suppressions-before.suppressions)
	if got := after.total() - before.total(); got != wantDecisions {
		b.Errorf("%s: %d decisions in the campaign phase, want %d (one per contact of each campaign's business)", name, got, wantDecisions)
	}

	// RSS against the campaigns published.
	rssAt := func(n int64) float64 {
		rssMu.Lock()
		defer rssMu.Unlock()
		for _, s := range rss {
			if s.published >= n {
				return s.mib
			}
		}
		if len(rss) > 0 {
			return rss[len(rss)-1].mib
		}
		return 0
	}
	total := int64(len(camps))
	// The large fan-out is at a third: the samples are after it.
	res["rss_half_MiB"], res["rss_3q_MiB"], res["rss_all_MiB"] = rssAt(total/2), rssAt(3*total/4), rssAt(total)
	res["rss_end_MiB"] = rssEnd
	res["peak_rss_MiB"] = peak
	res["drain_s"] = (done - published).Seconds()
	b.Logf("%s: RSS after %d, %d, %d campaigns published: %.0f, %.0f, %.0f MiB; at the phase's end %.0f MiB; peak (ingest included) %.0f MiB",
		name, total/2, 3*total/4, total, res["rss_half_MiB"], res["rss_3q_MiB"], res["rss_all_MiB"], rssEnd, peak)

	// Changelog records of the phase, by key kind.
	mcChangelog(b, c, w, camps, chStart, chEnd, res, name)

	// Latencies, from the inbox.
	lastTS := map[string]time.Time{}
	for _, r := range c.readAll(b, c.names.Inbox) {
		m, err := c.serde.DecodeInbox(r.Value)
		if err != nil {
			continue
		}
		if r.Timestamp.After(lastTS[m.CampaignID]) {
			lastTS[m.CampaignID] = r.Timestamp
		}
	}
	var large mcCampaign
	for _, mc := range camps {
		if mc.kind == "large" {
			large = mc
		}
	}
	largeEnd := lastTS[large.c.CampaignID]
	res["large_fanout_s"] = largeEnd.Sub(large.published).Seconds()
	var during, others []time.Duration
	for _, mc := range camps {
		last, ok := lastTS[mc.c.CampaignID]
		if !ok || mc.kind == "large" {
			continue // a business's later campaign within 24h delivers nothing
		}
		lat := last.Sub(mc.published)
		if mc.kind == "probe" && mc.published.Before(largeEnd) {
			during = append(during, lat)
		} else {
			others = append(others, lat)
		}
	}
	slices.Sort(during)
	slices.Sort(others)
	ms := func(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
	res["probe_p50_ms"], res["probe_p99_ms"] = ms(pct(during, 50)), ms(pct(during, 99))
	res["small_p50_ms"], res["small_p99_ms"] = ms(pct(others, 50)), ms(pct(others, 99))
	b.Logf("%s: the large campaign (%d contacts) fanned out in %s after its publish; %d probes (~300 contacts) published meantime: publish to last inbox record p50 %s, p99 %s, max %s; other campaigns (%d with deliveries): p50 %s, p99 %s, max %s",
		name, len(w.biz[0].users), largeEnd.Sub(large.published).Round(time.Millisecond), len(during), pct(during, 50), pct(during, 99), pct(during, 100),
		len(others), pct(others, 50), pct(others, 99), pct(others, 100))
	if len(during) == 0 {
		b.Logf("%s: no probe was published during the large fan-out: raise -bench.camp.large or lower -bench.camp.probe-every", name)
	}

	// 3. start-up on a campaigns topic with a history of expired campaigns.
	p.term(b)
	pastAt := runStart.Add(-30 * 24 * time.Hour)
	const chunk = 20_000
	for lo := 0; lo < *mcPast; lo += chunk {
		var recs []*kgo.Record
		for i := lo; i < min(lo+chunk, *mcPast); i++ {
			s := pastAt.Add(time.Duration(i) * time.Millisecond)
			pc := schemas.Campaign{CampaignID: fmt.Sprintf("past-%08d", i), BusinessID: w.biz[1+i%(len(w.biz)-1)].id, Action: schemas.Launch,
				SendAt: s, ExpiresAt: s.Add(time.Hour), Message: schemas.Message{Text: "past"}}
			recs = append(recs, c.campaignRecord(b, &pc))
		}
		c.produce(b, recs...)
	}
	startup := func(what string, probe int, wipe bool) {
		if wipe {
			if err := os.RemoveAll(stateDir); err != nil {
				b.Fatal(err)
			}
		}
		mc := newCampaign(w.probes[probe], "startup", time.Now().UTC().Truncate(time.Millisecond))
		if *mcExpiry <= 5*time.Minute && mc.c.SendAt.Before(tickAt) {
			mc.sentAt = tickAt // late: the stream time is past its send_at
		}
		publish(mc)
		at := time.Now()
		q := start(what)
		ready := waitReady(b, q, 15*time.Minute)
		want := float64(len(w.biz[mc.biz].users))
		for scrapeCounters(metricsURL(q))["sponsor_deliveries_total"] < want {
			if err := q.exited(); err != nil {
				b.Fatalf("%s: %s: %v", name, what, err)
			}
			if time.Since(at) > 15*time.Minute {
				b.Fatalf("%s: %s: the fresh campaign not delivered after 15 minutes", name, what)
			}
			time.Sleep(20 * time.Millisecond) // a sampling interval, not an assertion
		}
		served := time.Since(at)
		m := scrapeCounters(metricsURL(q))
		res["startup_"+what+"_ready_s"] = ready.Seconds()
		res["startup_"+what+"_delivered_s"] = served.Seconds()
		res["startup_"+what+"_peak_rss_MiB"] = vmHWM(q)
		b.Logf("%s: start-up (%s) with %d past campaigns on the topic: /readyz 200 after %s, the fresh campaign's %0.f deliveries committed after %s; %.0f changelog records restored; peak RSS %.0f MiB",
			name, what, *mcPast, ready.Round(time.Millisecond), want, served.Round(time.Millisecond), m["sponsor_restored_records_total"], vmHWM(q))
		q.term(b)
	}
	startup("fresh", len(w.probes)-2, true)
	startup("restart", len(w.probes)-1, false)

	// Correctness: the inbox is the workload's expectation.
	ph.mu.Lock()
	camps = slices.Clone(ph.camps)
	ph.mu.Unlock()
	want := map[pairKey]delivery{}
	var recs []schemas.Campaign
	first := map[int]bool{}
	slices.SortStableFunc(camps, func(x, y mcCampaign) int {
		if c := x.c.SendAt.Compare(y.c.SendAt); c != 0 {
			return c
		}
		return strings.Compare(x.c.CampaignID, y.c.CampaignID)
	})
	for _, mc := range camps {
		recs = append(recs, mc.c)
		if first[mc.biz] {
			continue
		}
		first[mc.biz] = true
		for _, u := range w.biz[mc.biz].users {
			want[pairKey{mc.c.CampaignID, mcUser(u)}] = delivery{Campaign: mc.c.CampaignID, User: mcUser(u), Business: mc.c.BusinessID, SentAt: mc.sentAt}
		}
	}
	rep := compareInbox(c.serde, c.readAll(b, c.names.Inbox), want, recs, c.parts)
	if !rep.ok() {
		b.Errorf("%s: inbox is not the expected: %s", name, rep)
	}
	b.Logf("%s: inbox records %d, deliveries %d, expected %d, duplicates %d, missing %d, extra %d, wrong %d",
		name, rep.Records, rep.Deliveries, rep.Expected, len(rep.Duplicates), len(rep.Missing), len(rep.Extra), len(rep.Wrong))
	return res
}

// mcChangelog counts the changelog records of the campaign phase by key
// kind, and reports those of campaign keys per campaign per partition: in
// all, and on the partitions with no contact of the campaign's business.
// Kinds the layout of this tree does not know count as campaign records
// too, so that a new layout's campaign state is not missed; the log names
// every kind.
func mcChangelog(b *testing.B, c *cluster, w *mcWorkload, camps []mcCampaign, from, to map[int32]int64, res map[string]float64, name string) {
	byID := map[string]*mcCampaign{}
	for i := range camps {
		byID[camps[i].c.CampaignID] = &camps[i]
	}
	kinds := map[string]int{}
	var campRecs, noContactRecs, unknown, metaRecs, metaBytes, campBytes int
	rd := kafkaconn.Reader{Opts: []kgo.Opt{kgo.SeedBrokers(c.brokers...)}, Topics: map[string][]int32{c.names.Changelog: nil},
		Starts: map[string]map[int32]int64{c.names.Changelog: from}, Ends: map[string]map[int32]int64{c.names.Changelog: to}}
	ctx := testContext(b, 5*time.Minute)
	err := rd.Read(ctx, func(r *kgo.Record) error {
		if len(r.Key) == 0 {
			kinds["empty"]++
			return nil
		}
		kind := r.Key[0]
		switch kind {
		case 'm':
			kinds["m"]++
			metaRecs++
			metaBytes += len(r.Key) + len(r.Value)
			return nil
		case 'c', 'r', 'x', 'k':
			kinds[string(kind)]++
			return nil
		case changelogCampaignKind:
			kinds[string(kind)]++
		default:
			kinds[fmt.Sprintf("0x%02x", kind)]++
			unknown++
		}
		campRecs++
		campBytes += len(r.Key) + len(r.Value)
		if i := bytes.Index(r.Key, []byte("camp-")); i >= 0 {
			if mc := byID[string(r.Key[i:])]; mc != nil && w.biz[mc.biz].parts&(1<<r.Partition) == 0 {
				noContactRecs++
			}
		}
		return nil
	})
	if err != nil {
		b.Fatalf("read the changelog: %v", err)
	}
	var noContactPairs int
	for _, mc := range camps {
		for p := range w.parts {
			if w.biz[mc.biz].parts&(1<<p) == 0 {
				noContactPairs++
			}
		}
	}
	pairs := len(camps) * int(w.parts)
	res["chlog_camp_rec/camp/part"] = float64(campRecs) / float64(pairs)
	if noContactPairs > 0 {
		res["chlog_camp_rec/camp/nocontact_part"] = float64(noContactRecs) / float64(noContactPairs)
	}
	// A layout may keep campaign state in the task's metadata record
	// (written with every transaction anyway): its size, and the bytes of
	// campaign and metadata records together per campaign per partition.
	if metaRecs > 0 {
		res["chlog_meta_B/rec"] = float64(metaBytes) / float64(metaRecs)
	}
	res["chlog_camp+meta_B/camp/part"] = float64(campBytes+metaBytes) / float64(pairs)
	var ks []string
	for _, k := range slices.Sorted(maps.Keys(kinds)) {
		ks = append(ks, fmt.Sprintf("%s=%d", k, kinds[k]))
	}
	b.Logf("%s: changelog records of the campaign phase by key kind: %s (c contact, r recipient window, m task metadata, g campaign; other kinds counted as campaign state); campaign records %d = %.2f per campaign per partition; on the %d (campaign, partition) pairs with no contact of the business: %d = %.2f per pair; campaign records %d bytes, metadata records %d bytes (%.0f each), together %.1f bytes per campaign per partition",
		name, strings.Join(ks, " "), campRecs, res["chlog_camp_rec/camp/part"], noContactPairs, noContactRecs, res["chlog_camp_rec/camp/nocontact_part"],
		campBytes, metaBytes, res["chlog_meta_B/rec"], res["chlog_camp+meta_B/camp/part"])
}

// mcDecisions are an instance's committed decisions.
type mcDecisions struct{ deliveries, suppressions int64 }

func (d mcDecisions) total() int64 { return d.deliveries + d.suppressions }

// scrapeDecisions sums sponsor_deliveries_total and every
// sponsor_suppressions_total{reason=...} of an instance's /metrics.
func scrapeDecisions(url string) mcDecisions {
	var d mcDecisions
	text, ok := scrapeText(url)
	if !ok {
		return d
	}
	for _, l := range strings.Split(text, "\n") {
		f := strings.Fields(l)
		if len(f) != 2 {
			continue
		}
		name, _, _ := strings.Cut(f[0], "{")
		v, err := strconv.ParseFloat(f[1], 64)
		if err != nil {
			continue
		}
		switch name {
		case "sponsor_deliveries_total":
			d.deliveries += int64(v)
		case "sponsor_suppressions_total":
			d.suppressions += int64(v)
		}
	}
	return d
}

// vmRSS returns the resident set of a process in MiB (VmRSS), 0 if unknown.
func vmRSS(p *proc) float64 { return procStatusMiB(p, "VmRSS:") }

func procStatusMiB(p *proc, field string) float64 {
	bs, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", p.cmd.Process.Pid))
	if err != nil {
		return 0
	}
	for _, l := range strings.Split(string(bs), "\n") {
		if strings.HasPrefix(l, field) {
			if f := strings.Fields(l); len(f) >= 2 {
				kb, _ := strconv.ParseFloat(f[1], 64)
				return kb / 1024
			}
		}
	}
	return 0
}
