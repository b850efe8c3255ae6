package pipeline

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sr"

	"github.com/sponsored/sponsor/policy"
	"github.com/sponsored/sponsor/schemas/wire"
	"github.com/sponsored/sponsor/state"
	"github.com/sponsored/sponsor/topics"
)

// Runner is one instance of the pipeline. Create it with New, run it with
// Run; Stats, Ready, LeaveGroupOnShutdown and Handler's endpoints may be
// used concurrently with Run.
//
// Run wires the parts that do the work, each owning its own state:
// member (session.go) the group session and its fencing; handover
// (handover.go) the partitions assigned and their restore; txnLoop
// (loop.go, transaction.go) the tasks and their transactions, on one
// goroutine, with lagMonitor (lag.go) and fanoutReport (fanouts.go); the
// HTTP handlers (http.go) read the Runner through a narrow interface.
type Runner struct {
	cfg   Config
	log   *slog.Logger
	stats Stats
	ready atomic.Bool // set by the loop and the restores, read by Ready

	view  storeRef                // the store, for the HTTP handlers and the metrics
	scan  sync.Mutex              // held by the one /state/user scan of whole partitions allowed at a time
	owned atomic.Pointer[[]int32] // the partitions of the tasks owned, sorted, for the HTTP handlers; set by the loop

	metrics prometheus.Registerer // set by Register: where the Kafka clients' metrics go

	// leave makes a static member leave its group when Run ends
	// (Config.LeaveGroupOnShutdown, or LeaveGroupOnShutdown while running).
	leave atomic.Bool
}

// New validates cfg and returns a Runner; it does no I/O.
func New(cfg Config) (*Runner, error) {
	cfg.EnsureDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("pipeline config: %w", err)
	}
	r := &Runner{cfg: cfg, log: cfg.Logger}
	r.leave.Store(cfg.LeaveGroupOnShutdown)
	return r, nil
}

// LeaveGroupOnShutdown makes the instance leave its group when Run ends, as
// Config.LeaveGroupOnShutdown does: call it before ending Run's context to
// hand the partitions over at once (scaling in). Safe to call concurrently
// with Run; a dynamic member leaves anyway.
func (r *Runner) LeaveGroupOnShutdown() { r.leave.Store(true) }

// Stats returns the runner's counters.
func (r *Runner) Stats() *Stats { return &r.stats }

// Ready reports whether the runner has joined its group (received its first
// assignment, possibly empty) and every task it owns is restored.
func (r *Runner) Ready() bool { return r.ready.Load() }

// Names returns the topic names the runner uses.
func (r *Runner) Names() topics.Names {
	n := r.cfg.Run().Names()
	if r.cfg.NoDecisions {
		n.Decisions = ""
	}
	return n
}

// Run runs the pipeline until ctx ends (a clean shutdown: the transaction
// in flight finishes, the state is flushed) or a fatal error.
func (r *Runner) Run(ctx context.Context) (err error) {
	looping := false
	defer func() {
		// A shutdown asked for (SIGTERM) while starting up cuts short
		// whatever was in flight (a registry call, a topic check): that
		// is a clean stop, not a failure.
		if err != nil && !looping && ctx.Err() != nil {
			r.log.Info("stopped during start-up", "err", err)
			err = nil
		}
	}()
	cfg := &r.cfg
	if err := os.MkdirAll(cfg.StateDir, 0o755); err != nil {
		return fmt.Errorf("create state folder: %w", err)
	}
	id, err := instanceID(cfg)
	if err != nil {
		return err
	}
	group := cfg.Run().ConsumerGroup()
	log := r.log.With("instance", id, "group", group)
	r.log = log
	names := r.Names()

	base, regOpts, err := clientOpts(cfg, id, log)
	if err != nil {
		return err
	}
	admCl, err := kgo.NewClient(slices.Concat(base, r.kafkaMetrics(ClientAdmin))...)
	if err != nil {
		return fmt.Errorf("kafka client: %w", err)
	}
	defer admCl.Close()
	adm := kadm.NewClient(admCl)
	lay, err := r.checkCluster(ctx, adm, names)
	if err != nil {
		return err
	}
	env, closeParts, err := r.openParts(ctx, names, lay, base, regOpts)
	if err != nil {
		return err
	}
	defer closeParts()

	hand := &handover{cfg: cfg, log: log, stats: &r.stats, names: names, txnID: cfg.Run().TransactionalID(id), adm: adm, env: env, base: base, ready: &r.ready,
		incoming: map[int32]*task{}, revoked: map[int32]bool{}}
	var balancer kgo.GroupBalancer
	if cfg.StandbyReplicas > 0 && !cfg.UnsafeNoTransactions {
		// No kprom on the followers' clients: one per partition followed,
		// they would collide under one client label.
		st := newStandbys(log, &r.stats, adm, env.store, names.Changelog, base)
		hand.standbys = st
		balancer = &standbyBalancer{topic: names.Interactions, replicas: cfg.StandbyReplicas,
			checkpoints: func() map[int32]int64 { return localCheckpoints(env.store, lay.nparts) }, onStandbys: st.set}
		stCtx, stopStandbys := context.WithCancel(context.WithoutCancel(ctx))
		var stDone sync.WaitGroup
		stDone.Go(func() { st.run(stCtx) })
		defer func() { // before closeParts closes the store
			stopStandbys()
			stDone.Wait()
		}()
	}
	loop := &txnLoop{cfg: cfg, log: log, stats: &r.stats, names: names, ncamp: lay.ncamp, interactionsID: lay.interactionsID,
		adm: adm, env: env, hand: hand, ready: &r.ready, owned: &r.owned, tasks: map[int32]*task{},
		lag: lagMonitor{adm: adm, names: names, stats: &r.stats}, fanouts: fanoutReport{log: log, stats: &r.stats}}
	m := &member{cfg: cfg, log: log, stats: &r.stats, adm: adm, id: id, txnID: cfg.Run().TransactionalID(id),
		opts: groupOpts(cfg, names, id, slices.Concat(base, r.kafkaMetrics(ClientSession)), hand, balancer)}
	if cfg.UnsafeNoTransactions {
		log.Warn("EXACTLY-ONCE IS OFF (UnsafeNoTransactions): a crash can lose or repeat inbox records; for negative-control tests only")
	}
	if err := m.open(ctx); err != nil {
		return err
	}
	log.Info("pipeline started", "interactions", names.Interactions, "partitions", lay.nparts, "partitioner", cfg.Partitioner,
		"campaigns", names.Campaigns, "inbox", names.Inbox, "changelog", names.Changelog, "decisions", names.Decisions, "transactional_id", m.txnID,
		"security", cfg.Security, "static_member", !cfg.DynamicMembership, "standby_replicas", cfg.StandbyReplicas)

	looping = true
	for {
		err = loop.run(ctx, m.sess)
		r.ready.Store(false)
		m.close()
		loop.drop()
		hand.reset()
		if !errors.Is(err, errProducerUnusable) || ctx.Err() != nil {
			break
		}
		var again bool
		if again, err = m.rejoin(ctx, err); !again {
			break
		}
	}
	m.stop(err, r.leave.Load())
	log.Info("pipeline stopped", "err", err)
	return err
}

// clientOpts returns the options every Kafka client of the instance starts
// from (seed brokers, client id, logger, the user's options, security), and
// the schema registry client's.
func clientOpts(cfg *Config, id string, log *slog.Logger) ([]kgo.Opt, []sr.ClientOpt, error) {
	secOpts, err := cfg.Security.KafkaOpts()
	if err != nil {
		return nil, nil, err
	}
	regOpts, err := cfg.Security.RegistryOpts()
	if err != nil {
		return nil, nil, err
	}
	base := append([]kgo.Opt{kgo.SeedBrokers(cfg.Brokers...), kgo.ClientID("sponsor-" + id), kgo.WithLogger(kgoLogger{log})}, cfg.KafkaOpts...)
	return append(base, secOpts...), regOpts, nil
}

// layout is what Run learns of the topics before it starts.
type layout struct {
	nparts         int32    // interactions partitions
	ncamp          int      // campaigns partitions
	interactionsID [16]byte // the interactions topic's id, for offset commits
}

// checkCluster checks the session timeout against the brokers' bounds and
// the topics (creating them when Config.CreateTopics), and returns their
// layout.
func (r *Runner) checkCluster(ctx context.Context, adm *kadm.Client, names topics.Names) (layout, error) {
	cfg := &r.cfg
	var lay layout
	// A session timeout the coordinators refuse fails every join with
	// INVALID_SESSION_TIMEOUT, which the client retries for ever: say so
	// now, once, with the bound.
	bounds := brokerSessionBounds(ctx, adm)
	if err := bounds.check(cfg.SessionTimeout); err != nil {
		return lay, err
	}
	cat := topics.Catalog{Names: names, Partitions: cfg.Partitions, ReplicationFactor: -1, DecisionsRetention: cfg.DecisionsRetention}
	var err error
	lay.nparts, err = cat.Ensure(ctx, adm, cfg.CreateTopics)
	if err != nil {
		return lay, err
	}
	// A topic just created may take a moment to show in the metadata.
	for wait := time.Now().Add(15 * time.Second); ; {
		td, err := adm.ListTopics(ctx, names.Campaigns)
		if err != nil {
			return lay, fmt.Errorf("describe %s: %w", names.Campaigns, err)
		}
		if lay.ncamp = len(td[names.Campaigns].Partitions); lay.ncamp > 0 {
			if it, err := adm.ListTopics(ctx, names.Interactions); err == nil {
				lay.interactionsID = it[names.Interactions].ID
			}
			return lay, nil
		}
		if time.Now().After(wait) {
			return lay, fmt.Errorf("topic %s has no partitions", names.Campaigns)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// openParts opens what the tasks share: the serde (with the registry), the
// policy, the state store and the campaign broadcast reader, started. The
// function it returns stops and closes them; on error nothing is left open.
func (r *Runner) openParts(ctx context.Context, names topics.Names, lay layout, base []kgo.Opt, regOpts []sr.ClientOpt) (_ *env, closeParts func(), err error) {
	cfg := &r.cfg
	rc, err := sr.NewClient(append([]sr.ClientOpt{sr.URLs(cfg.Registry)}, regOpts...)...)
	if err != nil {
		return nil, nil, fmt.Errorf("schema registry client: %w", err)
	}
	serde, err := wire.New(ctx, rc, wire.Topics{Interactions: names.Interactions, Campaigns: names.Campaigns, Inbox: names.Inbox, Decisions: names.Decisions})
	if err != nil {
		return nil, nil, fmt.Errorf("schemas: %w", err)
	}
	pol, err := policy.New(cfg.Policy)
	if err != nil {
		return nil, nil, err
	}

	store, err := state.Open(StoreDir(cfg.StateDir), state.Options{Logger: r.log})
	if err != nil {
		return nil, nil, err
	}
	r.view.set(store)
	closeStore := func() {
		r.view.set(nil)
		if err := store.Close(); err != nil {
			r.log.Error("close state", "err", err)
		}
	}
	bc, err := newBroadcast(names.Campaigns, lay.ncamp, r.log, base, r.kafkaMetrics(ClientCampaigns))
	if err != nil {
		closeStore()
		return nil, nil, err
	}
	retention, err := topicRetention(ctx, bc.adm, names.Campaigns)
	if err != nil {
		bc.close()
		closeStore()
		return nil, nil, err
	}
	r.log.Info("campaigns topic retention", "topic", names.Campaigns, "retention_ms", retention)
	bcCtx, stopBC := context.WithCancel(context.WithoutCancel(ctx))
	var bcDone sync.WaitGroup
	bcDone.Go(func() { bc.run(bcCtx) })
	closeParts = func() {
		stopBC()
		bc.close()
		bcDone.Wait()
		bc.close()
		closeStore()
	}
	return &env{names: names, policy: pol, serde: serde, store: store, chunk: cfg.FanoutChunk, campaign: bc, campaignRetention: retention, unsafe: cfg.UnsafeNoTransactions,
		partitions: lay.nparts, partitioner: topics.Partitioner(cfg.Partitioner), skew: cfg.MaxClockSkew.Milliseconds()}, closeParts, nil
}

// topicRetention returns the retention.ms of topic, 0 when it is infinite
// (-1) or not set: a campaign that must be remembered longer than half of
// it is adopted (policy.Partition.SetRetention).
func topicRetention(ctx context.Context, adm *kadm.Client, topic string) (policy.Millis, error) {
	rcs, err := adm.DescribeTopicConfigs(ctx, topic)
	if err != nil {
		return 0, fmt.Errorf("describe the configs of %s: %w", topic, err)
	}
	rc, err := rcs.On(topic, nil)
	if err != nil {
		return 0, fmt.Errorf("describe the configs of %s: %w", topic, err)
	}
	if rc.Err != nil {
		return 0, fmt.Errorf("describe the configs of %s: %w", topic, rc.Err)
	}
	for _, c := range rc.Configs {
		if c.Key != "retention.ms" || c.Value == nil {
			continue
		}
		ms, err := strconv.ParseInt(*c.Value, 10, 64)
		if err != nil {
			return 0, fmt.Errorf("retention.ms of %s: %q: %w", topic, *c.Value, err)
		}
		return max(ms, 0), nil
	}
	return 0, nil
}
