package loadgen

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sponsored/sponsor/schemas/wire"
	"github.com/twmb/franz-go/pkg/kgo"
)

// GenConfig shapes a [Gen] run. Count, Duration and ctx bound the run; with
// none of them set it runs until ctx ends.
type GenConfig struct {
	// Workload is the synthetic population (seed, users, businesses); see
	// [Generator]. The same seed gives the same sequence of records.
	Workload Workload
	// Count is how many interactions to write; 0: no limit.
	Count int64
	// Rate is interactions per second; 0: as fast as the brokers take them.
	Rate float64
	// Duration stops the run after this long; 0: no limit.
	Duration time.Duration
	// CampaignEvery launches a campaign this often (wall clock), the first
	// after half of it; 0: no campaigns.
	CampaignEvery time.Duration
	// CampaignLead is how far ahead of its launch a campaign's send_at is;
	// default 3s.
	CampaignLead time.Duration
	// Progress, if set, is called about every ProgressEvery and once at
	// the end (Done set), on Gen's goroutine.
	Progress func(Progress)
	// ProgressEvery defaults to one second.
	ProgressEvery time.Duration
	// Now is the clock: event times and pacing. Default time.Now.
	Now func() time.Time
}

// Progress is where a [Gen] run stands.
type Progress struct {
	// Interactions and Campaigns count the records the brokers acknowledged.
	Interactions, Campaigns int64
	// Total is the interactions the run will write (Count, or Rate times
	// Duration); 0 when unknown.
	Total int64
	// Elapsed is the time since the start.
	Elapsed time.Duration
	// Rate is the acknowledged interactions per second since the start.
	Rate float64
	// ETA is the estimated time left; negative when unknown.
	ETA time.Duration
	// Done is set on the last report.
	Done bool
}

// Gen writes a synthetic workload: interactions from package workload with
// event time = now, and every CampaignEvery a campaign launch whose send_at
// is CampaignLead ahead. Records are keyed as the contract says, written by
// an idempotent (not transactional) producer. It returns the final
// progress; a run stopped by ctx is not an error.
func Gen(ctx context.Context, t Target, cfg GenConfig) (Progress, error) {
	if err := t.validate(); err != nil {
		return Progress{}, err
	}
	switch {
	case cfg.Count < 0:
		return Progress{}, fmt.Errorf("loadgen: negative Count %d", cfg.Count)
	case cfg.Rate < 0:
		return Progress{}, fmt.Errorf("loadgen: negative Rate %v", cfg.Rate)
	case cfg.Duration < 0 || cfg.CampaignEvery < 0:
		return Progress{}, errors.New("loadgen: negative Duration or CampaignEvery")
	}
	if cfg.CampaignLead <= 0 {
		cfg.CampaignLead = 3 * time.Second
	}
	if cfg.ProgressEvery <= 0 {
		cfg.ProgressEvery = time.Second
	}
	now := cfg.Now
	if now == nil {
		now = time.Now
	}
	serde, err := t.serde(ctx)
	if err != nil {
		return Progress{}, err
	}
	cl, err := kgo.NewClient(append(append([]kgo.Opt{}, t.ClientOpts...),
		kgo.SeedBrokers(t.Brokers...),
		kgo.RecordPartitioner(t.Partitioner.ProducerPartitioner()),
		kgo.ProducerLinger(5*time.Millisecond),
	)...)
	if err != nil {
		return Progress{}, err
	}
	defer cl.Close()
	need := []string{t.Topics.Interactions}
	if cfg.CampaignEvery > 0 {
		need = append(need, t.Topics.Campaigns)
	}
	if err := requireTopics(ctx, cl, need...); err != nil {
		return Progress{}, err
	}
	f := feeder{cl: cl, serde: serde, interactions: t.Topics.Interactions, campaigns: t.Topics.Campaigns, g: NewGenerator(cfg.Workload), cfg: cfg, now: now}
	return f.run(ctx)
}

// Feed writes a live workload with cl until ctx ends, the way [Gen] does:
// interactions of g at about rate per second with event time = now, and
// every campaignEvery (0: never) a campaign launch sent 3 seconds later.
// It is Gen for a caller that has its client and serde already (the demo
// of `sponsor dev`): it neither checks the topics nor registers schemas.
// A rate of 0 or less writes campaigns only. A run stopped by ctx is not an
// error; a record the brokers refuse is.
func Feed(ctx context.Context, cl *kgo.Client, serde *wire.Serde, interactions, campaigns string, g *Generator, rate float64, campaignEvery time.Duration) error {
	cfg := GenConfig{Rate: rate, CampaignEvery: max(campaignEvery, 0), CampaignLead: 3 * time.Second, ProgressEvery: time.Second}
	f := feeder{cl: cl, serde: serde, interactions: interactions, campaigns: campaigns, g: g, cfg: cfg, now: time.Now, campaignsOnly: rate <= 0}
	_, err := f.run(ctx)
	return err
}

// feeder is one run of the live feeder behind Gen and Feed.
type feeder struct {
	cl                      *kgo.Client
	serde                   *wire.Serde
	interactions, campaigns string
	g                       *Generator
	cfg                     GenConfig // with its defaults filled in
	now                     func() time.Time
	// campaignsOnly writes no interaction (Feed at rate 0; Gen's Rate 0
	// means no limit).
	campaignsOnly bool
}

// run writes f's workload until its bounds or ctx end it, waits for what
// is in flight, and returns the final progress.
func (f *feeder) run(ctx context.Context) (Progress, error) {
	cfg, cl, serde, now, g := f.cfg, f.cl, f.serde, f.now, f.g
	var (
		acked, ackedCampaigns atomic.Int64
		errOnce               sync.Once
		firstErr              atomic.Pointer[error]
	)
	fail := func(err error) { errOnce.Do(func() { firstErr.Store(&err) }) }
	promise := func(n *atomic.Int64) func(*kgo.Record, error) {
		return func(r *kgo.Record, err error) {
			if err != nil {
				// Records still buffered when ctx ends fail with its error:
				// not written, and not a failure of the run.
				if ctx.Err() == nil || !errors.Is(err, ctx.Err()) {
					fail(fmt.Errorf("produce to %s: %w", r.Topic, err))
				}
				return
			}
			n.Add(1)
		}
	}
	total := cfg.Count
	if total == 0 && cfg.Rate > 0 && cfg.Duration > 0 {
		total = int64(cfg.Rate * cfg.Duration.Seconds())
	}
	start := now()
	snapshot := func(done bool) Progress {
		p := Progress{Interactions: acked.Load(), Campaigns: ackedCampaigns.Load(), Total: total, Elapsed: now().Sub(start), ETA: -1, Done: done}
		if s := p.Elapsed.Seconds(); s > 0 {
			p.Rate = float64(p.Interactions) / s
		}
		if total > 0 && p.Rate > 0 {
			p.ETA = time.Duration(float64(max(total-p.Interactions, 0)) / p.Rate * float64(time.Second))
		}
		if left := max(cfg.Duration-p.Elapsed, 0); cfg.Duration > 0 && (p.ETA < 0 || left < p.ETA) {
			p.ETA = left
		}
		if done {
			p.ETA = 0
		}
		return p
	}
	report := func(done bool) {
		if cfg.Progress != nil {
			cfg.Progress(snapshot(done))
		}
	}

	var sent int64
	nextCampaign := start.Add(cfg.CampaignEvery / 2)
	nextReport := start.Add(cfg.ProgressEvery)
	const batch = 1000 // interactions per turn, so campaigns and reports interleave
	for ctx.Err() == nil && firstErr.Load() == nil {
		at := now()
		elapsed := at.Sub(start)
		if cfg.Duration > 0 && elapsed >= cfg.Duration || cfg.Count > 0 && sent >= cfg.Count {
			break
		}
		if !at.Before(nextReport) {
			report(false)
			nextReport = at.Add(cfg.ProgressEvery)
		}
		if cfg.CampaignEvery > 0 && !at.Before(nextCampaign) {
			nextCampaign = at.Add(cfg.CampaignEvery)
			c := g.Campaign(at.Add(cfg.CampaignLead))
			v, err := serde.AppendCampaign(nil, &c)
			if err != nil {
				return Progress{}, fmt.Errorf("encode campaign: %w", err)
			}
			cl.Produce(ctx, &kgo.Record{Topic: f.campaigns, Key: []byte(c.CampaignID), Value: v}, promise(&ackedCampaigns))
		}
		if f.campaignsOnly {
			wait := 50 * time.Millisecond
			if cfg.CampaignEvery > 0 {
				wait = min(max(nextCampaign.Sub(at), time.Millisecond), wait)
			}
			select {
			case <-ctx.Done():
			case <-time.After(wait):
			}
			continue
		}
		n := int64(batch)
		if cfg.Count > 0 {
			n = min(n, cfg.Count-sent)
		}
		if cfg.Rate > 0 {
			n = min(n, int64(cfg.Rate*elapsed.Seconds())+1-sent)
		}
		if n <= 0 {
			// Ahead of the rate: wait for the next interaction's turn.
			wait := time.Duration(float64(sent+1-int64(cfg.Rate*elapsed.Seconds())) / cfg.Rate * float64(time.Second))
			select {
			case <-ctx.Done():
			case <-time.After(min(max(wait, time.Millisecond), 50*time.Millisecond)):
			}
			continue
		}
		for range n {
			in := g.Interaction(at)
			v, err := serde.AppendInteraction(nil, &in)
			if err != nil {
				return Progress{}, fmt.Errorf("encode interaction: %w", err)
			}
			// Produce blocks while the client's buffer is full, which paces
			// an unlimited rate to what the brokers take.
			cl.Produce(ctx, &kgo.Record{Topic: f.interactions, Key: []byte(in.UserID), Value: v}, promise(&acked))
			sent++
		}
	}
	// Wait for what is in flight, even after ctx ended.
	flushCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	if err := cl.Flush(flushCtx); err != nil {
		fail(fmt.Errorf("flush: %w", err))
	}
	p := snapshot(true)
	if cfg.Progress != nil {
		cfg.Progress(p)
	}
	if e := firstErr.Load(); e != nil {
		return p, *e
	}
	return p, nil
}
