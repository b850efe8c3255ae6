package pipeline

import (
	"maps"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sponsored/sponsor/deadletter"
	"github.com/sponsored/sponsor/policy"
	"github.com/sponsored/sponsor/schemas"
)

// Stats counts what the runtime did since it started. The counters only
// move after the transaction that did the work committed. Safe for
// concurrent use.
type Stats struct {
	Interactions  atomic.Int64
	CampaignsSeen atomic.Int64
	// CampaignsFired counts fan-outs finished, one per campaign and
	// partition (a campaign on 6 partitions counts 6).
	CampaignsFired atomic.Int64
	// Campaigns counts the campaigns whose fan-out finished on every
	// partition of the instance: each campaign once.
	Campaigns   atomic.Int64
	Decisions   [8]atomic.Int64 // by policy.Reason; index 0 = delivered
	DeadLetters atomic.Int64    // in total; by reason: DeadLettersByReason
	// Late counts, by schemas.InteractionKind, the interactions that
	// arrived behind the watermark (more than the grace behind the stream
	// time): applied for later campaigns, too late for those already fired.
	Late [numKinds]atomic.Int64
	// LateSuppressions counts, by kind (BLOCK, SPONSORED_OPT_OUT), the
	// late ones that arrived after a delivery they would have stopped.
	LateSuppressions [numKinds]atomic.Int64
	// Erased counts the interactions not stored because they are from
	// before their user's erasure.
	Erased       atomic.Int64
	Transactions atomic.Int64
	Aborts       atomic.Int64
	// ProducerResets counts the new producer epochs taken after the
	// transactional producer was found fenced or otherwise unusable.
	ProducerResets atomic.Int64
	// FencedTransactions counts the open transactions of instances no
	// longer in the group that this instance fenced on an assignment.
	FencedTransactions atomic.Int64
	RestoredRecords    atomic.Int64
	TasksAssigned      atomic.Int64 // tasks currently owned and restored
	// CampaignRecordsHeld is the campaign records the broadcast reader
	// holds, and CampaignsRemembered the campaigns the tasks remember
	// (pending, firing, or done until their expiry), summed: as of the
	// last transaction's start. Both follow the pending work, not the
	// campaigns topic's history.
	CampaignRecordsHeld, CampaignsRemembered atomic.Int64
	// RestoringPartitions counts the partitions assigned to the instance
	// whose restore from the changelog has not finished (waiting for their
	// turn or reading).
	RestoringPartitions atomic.Int64
	// StandbyPromotions counts the partitions assigned to the instance
	// while it followed them as a standby (Config.StandbyReplicas).
	StandbyPromotions atomic.Int64

	// Histograms, set by Register, before Run; nil when not registered.
	commitLatency  prometheus.Histogram
	phaseSeconds   *prometheus.HistogramVec // by phase (txnPhases)
	fanoutSize     prometheus.Histogram
	fanoutSeconds  prometheus.Histogram
	restoreSeconds prometheus.Histogram

	mu          sync.Mutex
	fanouts     []FanoutProgress // in progress on the instance, by campaign
	lag         map[int32]int64  // interactions not yet processed, per owned partition
	stable      []StableOffsets  // LSO behind HWM, per owned partition of each topic
	deadLetters map[string]int64 // by reason
	remaining   map[int32]int64  // changelog records left to read, per partition restoring
	standby     map[int32]int64  // changelog records a standby is behind, per partition followed
}

// observeCommit records how long ending a committed transaction took.
func (s *Stats) observeCommit(d time.Duration) {
	if s.commitLatency != nil {
		s.commitLatency.Observe(d.Seconds())
	}
}

// The phases of a committed transaction, as the label values of
// sponsor_transaction_phase_seconds.
const (
	phaseProcess = "process" // the tasks' work: decode, rules, state, records
	phaseProduce = "produce" // handing the records the tasks did not hand over while they worked to the client
	phaseFlush   = "flush"   // until the broker acknowledged every record
	phaseEnd     = "end"     // the offset commit and EndTxn
)

// observePhases records the time each phase of a committed transaction took.
func (s *Stats) observePhases(process, produce, flush, end time.Duration) {
	if s.phaseSeconds == nil {
		return
	}
	for _, p := range [...]struct {
		name string
		d    time.Duration
	}{{phaseProcess, process}, {phaseProduce, produce}, {phaseFlush, flush}, {phaseEnd, end}} {
		s.phaseSeconds.WithLabelValues(p.name).Observe(p.d.Seconds())
	}
}

// observeFanout records a finished fan-out of one campaign on one task: the
// candidates it decided about and how long it took, from its first chunk to
// the commit of its last.
func (s *Stats) observeFanout(candidates int64, d time.Duration) {
	if s.fanoutSize != nil {
		s.fanoutSize.Observe(float64(candidates))
		s.fanoutSeconds.Observe(d.Seconds())
	}
}

// restoreProgress records where the restore of one partition stands.
func (s *Stats) restoreProgress(p RestoreProgress) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.remaining == nil {
		s.remaining = map[int32]int64{}
	}
	s.remaining[p.Partition] = max(p.End-p.Next, 0)
}

// restoreEnded records that the restore of partition p ended: took is how
// long it took when it succeeded, zero when it failed or was interrupted.
func (s *Stats) restoreEnded(p int32, took time.Duration) {
	s.mu.Lock()
	delete(s.remaining, p)
	s.mu.Unlock()
	if took > 0 && s.restoreSeconds != nil {
		s.restoreSeconds.Observe(took.Seconds())
	}
}

// setStandbyLag records the standbys' lag: the partitions followed are
// running; lag, if not nil, has their new lag, else they keep theirs (0
// for a new one).
func (s *Stats) setStandbyLag(lag map[int32]int64, running map[int32]bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	old := s.standby
	s.standby = make(map[int32]int64, len(running))
	for p := range running {
		if l, ok := lag[p]; ok {
			s.standby[p] = l
		} else {
			s.standby[p] = old[p]
		}
	}
}

// StandbyLag returns, per changelog partition this instance follows as a
// standby, how many changelog offsets its follower is behind the
// partition's last stable offset, as of the last check (every second).
func (s *Stats) StandbyLag() map[int32]int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return maps.Clone(s.standby)
}

// RestoreRemaining returns the changelog records the partitions being
// restored have left to read (end offset minus next offset, summed), as of
// their last fetch.
func (s *Stats) RestoreRemaining() int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	var n int64
	for _, r := range s.remaining {
		n += r
	}
	return n
}

// setLag replaces the per-partition lag with lag (owned partitions only).
func (s *Stats) setLag(lag map[int32]int64) {
	s.mu.Lock()
	s.lag = lag
	s.mu.Unlock()
}

// setStable replaces the LSO-behind-HWM figures with st.
func (s *Stats) setStable(st []StableOffsets) {
	s.mu.Lock()
	s.stable = st
	s.mu.Unlock()
}

// Stable returns, per owned partition of the interactions, inbox,
// changelog and decisions topics, how far the last stable offset is behind
// the high watermark and how long it has not moved, as of the last check
// (every few seconds).
func (s *Stats) Stable() []StableOffsets {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.stable)
}

// Lag returns the interactions not yet processed on the owned partitions,
// as of the last check (every few seconds).
func (s *Stats) Lag() int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	var n int64
	for _, l := range s.lag {
		n += l
	}
	return n
}

// Delivered returns the number of inbox records committed.
func (s *Stats) Delivered() int64 { return s.Decisions[policy.Delivered].Load() }

// DeadLettersByReason returns the records sent to the dead-letter topic, by
// the reason in their sponsor.errors.reason header.
func (s *Stats) DeadLettersByReason() map[string]int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return maps.Clone(s.deadLetters)
}

// counts is a task's tally for one transaction, added to Stats on commit.
// numKinds is the number of interaction kinds.
const numKinds = len(schemas.InteractionKinds)

type counts struct {
	interactions, campaignsSeen, campaignsFired, deadLetters int64
	late, lateSuppressions                                   [numKinds]int64
	erased                                                   int64
	decisions                                                [8]int64
	deadLetterReasons                                        map[string]int64
	// candidates counts, per campaign, the users the transaction's part
	// of its fan-out decided about; delivered, those delivered; visited,
	// the contacts it went over.
	candidates, delivered, visited map[string]int64
}

// deadLetter counts one dead letter of reason.
func (c *counts) deadLetter(reason deadletter.Reason) {
	c.deadLetters++
	if c.deadLetterReasons == nil {
		c.deadLetterReasons = map[string]int64{}
	}
	c.deadLetterReasons[string(reason)]++
}

func (s *Stats) add(c *counts) {
	s.Interactions.Add(c.interactions)
	s.CampaignsSeen.Add(c.campaignsSeen)
	s.CampaignsFired.Add(c.campaignsFired)
	s.DeadLetters.Add(c.deadLetters)
	for i, n := range c.decisions {
		s.Decisions[i].Add(n)
	}
	for k := range numKinds {
		if n := c.late[k]; n > 0 {
			s.Late[k].Add(n)
		}
		if n := c.lateSuppressions[k]; n > 0 {
			s.LateSuppressions[k].Add(n)
		}
	}
	s.Erased.Add(c.erased)
	if len(c.deadLetterReasons) > 0 {
		s.mu.Lock()
		if s.deadLetters == nil {
			s.deadLetters = map[string]int64{}
		}
		for r, n := range c.deadLetterReasons {
			s.deadLetters[r] += n
		}
		s.mu.Unlock()
	}
}

// deadLetterCollector exports sponsor_deadletters_total{reason}: every
// known reason from the start (at 0), and any other a dead letter carried.
type deadLetterCollector struct {
	s    *Stats
	desc *prometheus.Desc
}

func (c deadLetterCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

func (c deadLetterCollector) Collect(ch chan<- prometheus.Metric) {
	byReason := c.s.DeadLettersByReason()
	if byReason == nil {
		byReason = map[string]int64{}
	}
	for _, r := range deadletter.Reasons() {
		byReason[string(r)] += 0
	}
	for _, r := range slices.Sorted(maps.Keys(byReason)) {
		ch <- prometheus.MustNewConstMetric(c.desc, prometheus.CounterValue, float64(byReason[r]), r)
	}
}

// Register exports the counters on reg as sponsor_* metrics. A Runner's
// Register also exports its Kafka clients' metrics.
func (s *Stats) Register(reg prometheus.Registerer) error {
	counter := func(name, help string, v *atomic.Int64) prometheus.Collector {
		return prometheus.NewCounterFunc(prometheus.CounterOpts{Name: name, Help: help}, func() float64 { return float64(v.Load()) })
	}
	cs := []prometheus.Collector{
		counter("sponsor_interactions_total", "Interactions processed (committed).", &s.Interactions),
		counter("sponsor_campaign_records_total", "Campaign records read by tasks (committed), summed over tasks.", &s.CampaignsSeen),
		counter("sponsor_campaigns_fired_total", "Campaign fan-outs finished, summed over tasks.", &s.CampaignsFired),
		fanoutCollector{s},
		stableCollector{s},
		counter("sponsor_campaigns_completed_total", "Campaigns whose fan-out finished on every partition the instance owns, each campaign once.", &s.Campaigns),
		deadLetterCollector{s, prometheus.NewDesc("sponsor_deadletters_total",
			"Records sent to the dead-letter topic (committed), by the reason in their sponsor.errors.reason header.", []string{"reason"}, nil)},
		counter("sponsor_transactions_total", "Transactions committed.", &s.Transactions),
		counter("sponsor_transaction_aborts_total", "Transactions aborted.", &s.Aborts),
		counter("sponsor_producer_resets_total", "Times the transactional producer was found fenced (e.g. the coordinator aborted a transaction that outlived the transaction timeout) and the instance rejoined with a new producer epoch.", &s.ProducerResets),
		counter("sponsor_fenced_transactions_total", "Open transactions of instances no longer in the group that this instance fenced (aborted by initialising their transactional id) when it was assigned their partitions.", &s.FencedTransactions),
		counter("sponsor_restored_records_total", "Changelog records applied while restoring tasks.", &s.RestoredRecords),
		counter("sponsor_standby_promotions_total", "Partitions assigned to this instance while it followed them as a standby (their restore only read the tail).", &s.StandbyPromotions),
		standbyCollector{s},
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "sponsor_tasks", Help: "Tasks owned and restored."}, func() float64 { return float64(s.TasksAssigned.Load()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "sponsor_campaign_records_held",
			Help: "Campaign records the broadcast reader holds in memory: from the lowest replay offset of the instance's tasks on.",
		}, func() float64 { return float64(s.CampaignRecordsHeld.Load()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "sponsor_campaigns_remembered",
			Help: "Campaigns the instance's tasks remember (pending, firing, or done until their expiry), summed over tasks.",
		}, func() float64 { return float64(s.CampaignsRemembered.Load()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "sponsor_restoring_partitions",
			Help: "Partitions assigned to this instance whose restore from the changelog has not finished.",
		}, func() float64 { return float64(s.RestoringPartitions.Load()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "sponsor_restore_records_remaining",
			Help: "Changelog records the partitions being restored have left to read (end offset minus next offset, summed), as of their last fetch.",
		}, func() float64 { return float64(s.RestoreRemaining()) }),
	}
	s.commitLatency = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name:    "sponsor_transaction_commit_seconds",
		Help:    "Time to end a committed transaction (flush, offset commit, EndTxn).",
		Buckets: prometheus.ExponentialBuckets(0.001, 2, 14),
	})
	s.fanoutSize = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name: "sponsor_fanout_size",
		Help: "Candidates (users decided about: delivered or suppressed) of each finished campaign fan-out, per task.",
		// le="0" counts the fan-outs that found no contact of the
		// business in the task's partition; then 1 to 4M.
		Buckets: append([]float64{0}, prometheus.ExponentialBuckets(1, 4, 12)...),
	})
	s.fanoutSeconds = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name:    "sponsor_fanout_seconds",
		Help:    "Wall time of each finished campaign fan-out, per task, from its first chunk to the commit of its last.",
		Buckets: prometheus.ExponentialBuckets(0.01, 3, 12), // 10 ms to 30 min
	})
	s.restoreSeconds = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name:    "sponsor_restore_seconds",
		Help:    "Time to restore one partition's state from the changelog, per successful restore.",
		Buckets: prometheus.ExponentialBuckets(0.01, 3, 12), // 10 ms to 30 min
	})
	s.phaseSeconds = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "sponsor_transaction_phase_seconds",
		Help:    "Time each phase of a committed transaction took: process (the tasks' work: decode, rules, state, records), produce (handing the records to the client that the tasks did not hand over during their work: a task hands them over every 512 records), flush (until the broker acknowledged them), end (offset commit and EndTxn). The apply to Pebble runs after the commit, beside the next transaction.",
		Buckets: prometheus.ExponentialBuckets(0.0005, 2, 16), // 0.5 ms to 16 s
	}, []string{"phase"})
	for _, p := range []string{phaseProcess, phaseProduce, phaseFlush, phaseEnd} {
		s.phaseSeconds.WithLabelValues(p) // exported from the start, at 0
	}
	cs = append(cs, s.phaseSeconds, s.commitLatency, s.fanoutSize, s.fanoutSeconds, s.restoreSeconds, prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "sponsor_lag_records",
		Help: "Interactions not yet processed on the partitions this instance owns (last stable offset minus each task's next offset), checked every 2 s.",
	}, func() float64 { return float64(s.Lag()) }))
	cs = append(cs, counter("sponsor_interactions_erased_total", "Interactions not stored because they are from before their user's erasure (at or before its occurred_at), whenever they arrived: counted, never dead-lettered.", &s.Erased))
	for k := range numKinds {
		kind := schemas.InteractionKind(k)
		labels := prometheus.Labels{"kind": kind.String()}
		cs = append(cs, prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "sponsor_interactions_late_total", ConstLabels: labels,
			Help: "Interactions that arrived more than the grace behind the partition's stream time, by kind: applied for later campaigns, too late to count for those already fired.",
		}, func() float64 { return float64(s.Late[k].Load()) }))
		if kind == schemas.Block || kind == schemas.SponsoredOptOut {
			cs = append(cs, prometheus.NewCounterFunc(prometheus.CounterOpts{
				Name: "sponsor_late_suppressions_total", ConstLabels: labels,
				Help: "Late BLOCK and SPONSORED_OPT_OUT interactions that arrived after a delivery they would have stopped (a larger --grace would have stopped it).",
			}, func() float64 { return float64(s.LateSuppressions[k].Load()) }))
		}
	}
	for _, r := range policy.Reasons() {
		name, help := "sponsor_suppressions_total", "Candidates suppressed, by the first failing rule."
		labels := prometheus.Labels{"reason": r.String()}
		if r == policy.Delivered {
			name, help, labels = "sponsor_deliveries_total", "Sponsored messages delivered to the inbox (committed).", nil
		}
		v := &s.Decisions[r]
		cs = append(cs, prometheus.NewCounterFunc(prometheus.CounterOpts{Name: name, Help: help, ConstLabels: labels}, func() float64 { return float64(v.Load()) }))
	}
	for _, c := range cs {
		if err := reg.Register(c); err != nil {
			return err
		}
	}
	return nil
}

// FanoutProgress is a campaign's fan-out in progress on the instance,
// summed over its partitions that are still fanning it out, as of the last
// committed transaction.
type FanoutProgress struct {
	Campaign, Business string
	// Partitions is how many of the instance's partitions are fanning it
	// out.
	Partitions int
	// Contacts is the business's contacts on those partitions when their
	// fan-out started; Visited, how many of them the committed chunks went
	// over; Decided, the candidates they decided about (expired contacts
	// are visited, not decided).
	Contacts, Visited, Decided int64
	Started                    time.Time
}

// Fanouts returns the fan-outs in progress on the instance, by campaign id.
func (s *Stats) Fanouts() []FanoutProgress {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.fanouts)
}

func (s *Stats) setFanouts(fs []FanoutProgress) {
	slices.SortFunc(fs, func(a, b FanoutProgress) int { return strings.Compare(a.Campaign, b.Campaign) })
	s.mu.Lock()
	s.fanouts = fs
	s.mu.Unlock()
}

// fanoutCollector exports Fanouts as gauges labelled by campaign; a
// campaign's series go away when its fan-out ends.
type fanoutCollector struct{ s *Stats }

var (
	fanoutContactsDesc = prometheus.NewDesc("sponsor_fanout_contacts", "Contacts of the campaign's business on the instance's partitions still fanning it out, when their fan-out started.", []string{"campaign"}, nil)
	fanoutVisitedDesc  = prometheus.NewDesc("sponsor_fanout_contacts_visited", "Contacts the fan-out in progress has gone over so far (committed), of sponsor_fanout_contacts.", []string{"campaign"}, nil)
	fanoutDecidedDesc  = prometheus.NewDesc("sponsor_fanout_decided", "Candidates the fan-out in progress has decided about so far (committed).", []string{"campaign"}, nil)
)

func (c fanoutCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- fanoutContactsDesc
	ch <- fanoutVisitedDesc
	ch <- fanoutDecidedDesc
}

func (c fanoutCollector) Collect(ch chan<- prometheus.Metric) {
	for _, f := range c.s.Fanouts() {
		ch <- prometheus.MustNewConstMetric(fanoutContactsDesc, prometheus.GaugeValue, float64(f.Contacts), f.Campaign)
		ch <- prometheus.MustNewConstMetric(fanoutVisitedDesc, prometheus.GaugeValue, float64(f.Visited), f.Campaign)
		ch <- prometheus.MustNewConstMetric(fanoutDecidedDesc, prometheus.GaugeValue, float64(f.Decided), f.Campaign)
	}
}

// stableCollector exports Stable as gauges labelled by topic and
// partition; a partition's series go away when the instance no longer owns
// it.
type stableCollector struct{ s *Stats }

var (
	stableBehindDesc = prometheus.NewDesc("sponsor_lso_behind_hwm_records",
		"Records between the last stable offset and the high watermark of a partition the instance owns (interactions in; inbox, changelog, decisions out), checked every 2 s: what an open transaction holds back from every read_committed reader. Lag computed from the LSO (sponsor_lag_records) does not show it.",
		[]string{"topic", "partition"}, nil)
	stableStuckDesc = prometheus.NewDesc("sponsor_lso_stuck_seconds",
		"Seconds the partition's last stable offset has not moved while behind its high watermark, as of the last check (every 2 s); 0 when it is at the HWM. Longer than the transaction timeout: a transaction is stuck open (sponsor txn list).",
		[]string{"topic", "partition"}, nil)
)

func (c stableCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- stableBehindDesc
	ch <- stableStuckDesc
}

func (c stableCollector) Collect(ch chan<- prometheus.Metric) {
	for _, o := range c.s.Stable() {
		p := strconv.Itoa(int(o.Partition))
		ch <- prometheus.MustNewConstMetric(stableBehindDesc, prometheus.GaugeValue, float64(o.Behind), o.Topic, p)
		ch <- prometheus.MustNewConstMetric(stableStuckDesc, prometheus.GaugeValue, o.Stuck.Seconds(), o.Topic, p)
	}
}

// standbyCollector exports the standbys: how many partitions the instance
// follows, and each one's lag.
type standbyCollector struct{ s *Stats }

var (
	standbyPartitionsDesc = prometheus.NewDesc("sponsor_standby_partitions",
		"Changelog partitions this instance follows as a standby replica (--standby-replicas).", nil, nil)
	standbyLagDesc = prometheus.NewDesc("sponsor_standby_lag_records",
		"Changelog offsets a standby replica is behind its partition's last stable offset, per followed partition, checked every second.", []string{"partition"}, nil)
)

func (c standbyCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- standbyPartitionsDesc
	ch <- standbyLagDesc
}

func (c standbyCollector) Collect(ch chan<- prometheus.Metric) {
	lag := c.s.StandbyLag()
	ch <- prometheus.MustNewConstMetric(standbyPartitionsDesc, prometheus.GaugeValue, float64(len(lag)))
	for _, p := range slices.Sorted(maps.Keys(lag)) {
		ch <- prometheus.MustNewConstMetric(standbyLagDesc, prometheus.GaugeValue, float64(lag[p]), strconv.Itoa(int(p)))
	}
}
