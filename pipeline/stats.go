package pipeline

import (
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sponsored/sponsor/pipeline/policy"
)

// Stats counts what the runtime did since it started. The counters only
// move after the transaction that did the work committed. Safe for
// concurrent use.
type Stats struct {
	Interactions    atomic.Int64
	CampaignsSeen   atomic.Int64
	CampaignsFired  atomic.Int64
	Decisions       [8]atomic.Int64 // by policy.Reason; index 0 = delivered
	DeadLetters     atomic.Int64
	Transactions    atomic.Int64
	Aborts          atomic.Int64
	RestoredRecords atomic.Int64
	TasksAssigned   atomic.Int64 // tasks currently owned and restored

	commitLatency prometheus.Histogram // set by Register, before Run

	lagMu sync.Mutex
	lag   map[int32]int64 // interactions not yet processed, per owned partition
}

// observeCommit records how long ending a committed transaction took.
func (s *Stats) observeCommit(d time.Duration) {
	if s.commitLatency != nil {
		s.commitLatency.Observe(d.Seconds())
	}
}

// setLag replaces the per-partition lag with lag (owned partitions only).
func (s *Stats) setLag(lag map[int32]int64) {
	s.lagMu.Lock()
	s.lag = lag
	s.lagMu.Unlock()
}

// Lag returns the interactions not yet processed on the owned partitions,
// as of the last check (every few seconds).
func (s *Stats) Lag() int64 {
	s.lagMu.Lock()
	defer s.lagMu.Unlock()
	var n int64
	for _, l := range s.lag {
		n += l
	}
	return n
}

// Delivered returns the number of inbox records committed.
func (s *Stats) Delivered() int64 { return s.Decisions[policy.Delivered].Load() }

// counts is a task's tally for one transaction, added to Stats on commit.
type counts struct {
	interactions, campaignsSeen, campaignsFired, deadLetters int64
	decisions                                                [8]int64
}

func (s *Stats) add(c *counts) {
	s.Interactions.Add(c.interactions)
	s.CampaignsSeen.Add(c.campaignsSeen)
	s.CampaignsFired.Add(c.campaignsFired)
	s.DeadLetters.Add(c.deadLetters)
	for i, n := range c.decisions {
		s.Decisions[i].Add(n)
	}
}

// Register exports the counters on reg as sponsor_* metrics.
func (s *Stats) Register(reg prometheus.Registerer) error {
	counter := func(name, help string, v *atomic.Int64) prometheus.Collector {
		return prometheus.NewCounterFunc(prometheus.CounterOpts{Name: name, Help: help}, func() float64 { return float64(v.Load()) })
	}
	cs := []prometheus.Collector{
		counter("sponsor_interactions_total", "Interactions processed (committed).", &s.Interactions),
		counter("sponsor_campaign_records_total", "Campaign records read by tasks (committed), summed over tasks.", &s.CampaignsSeen),
		counter("sponsor_campaigns_fired_total", "Campaign fan-outs finished, summed over tasks.", &s.CampaignsFired),
		counter("sponsor_deadletters_total", "Records sent to the dead-letter topic.", &s.DeadLetters),
		counter("sponsor_transactions_total", "Transactions committed.", &s.Transactions),
		counter("sponsor_transaction_aborts_total", "Transactions aborted.", &s.Aborts),
		counter("sponsor_restored_records_total", "Changelog records applied while restoring tasks.", &s.RestoredRecords),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "sponsor_tasks", Help: "Tasks owned and restored."}, func() float64 { return float64(s.TasksAssigned.Load()) }),
	}
	s.commitLatency = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name:    "sponsor_transaction_commit_seconds",
		Help:    "Time to end a committed transaction (flush, offset commit, EndTxn).",
		Buckets: prometheus.ExponentialBuckets(0.001, 2, 14),
	})
	cs = append(cs, s.commitLatency, prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "sponsor_lag_records",
		Help: "Interactions not yet processed on the partitions this instance owns (last stable offset minus each task's next offset), checked every 2 s.",
	}, func() float64 { return float64(s.Lag()) }))
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
