package pipeline

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
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
// Run; Stats and Ready may be read concurrently.
type Runner struct {
	cfg   Config
	log   *slog.Logger
	stats Stats
	ready atomic.Bool
	// restoring counts restores in progress (the instance is not ready).
	restoring atomic.Int32
	// joined is set once the group gave the instance its first assignment
	// (possibly empty): before that it is not ready.
	joined atomic.Bool

	// Set up by Run.
	names  topics.Names
	nparts int32 // interactions partitions
	ncamp  int   // campaigns partitions
	adm    *kadm.Client
	admCl  *kgo.Client
	sess   session
	env    *env

	tasks map[int32]*task // owned by the loop goroutine
	// firing holds the campaigns whose fan-out finished on some partitions
	// of the instance and not yet on all; owned by the loop goroutine.
	firing map[string]*campaignFiring

	// Handed over by the group's callbacks, taken by the loop.
	handMu   sync.Mutex
	incoming map[int32]*task
	revoked  map[int32]bool

	base       []kgo.Opt // seed brokers and the user's options, for every client
	restoreErr error     // a failed restore: the loop stops the instance

	interactionsID [16]byte // topic id, for offset commits

	lastLagCheck  time.Time
	lastLagReport time.Time
	stable        stableWatch     // LSO behind HWM per owned partition, for Stats.Stable
	lso           map[int32]int64 // interactions LSO per partition at the last check

	view  storeRef                // the store, for the HTTP handlers
	scan  sync.Mutex              // held by the one /state/user scan of whole partitions allowed at a time
	owned atomic.Pointer[[]int32] // the partitions of the tasks owned, sorted, for the HTTP handlers

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
	r := &Runner{cfg: cfg, log: cfg.Logger, tasks: map[int32]*task{}, incoming: map[int32]*task{}, revoked: map[int32]bool{}}
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
	n := topics.NewNames(r.cfg.TopicPrefix, r.cfg.Group)
	if r.cfg.Shadow != "" {
		// r.cfg.Group is already the shadow's group (EnsureDefaults).
		n = topics.ShadowNames(r.cfg.TopicPrefix, strings.TrimSuffix(r.cfg.Group, "-shadow-"+r.cfg.Shadow), r.cfg.Shadow)
	}
	if r.cfg.NoDecisions {
		n.Decisions = ""
	}
	return n
}

// instanceID returns the configured identity or the one kept in the state
// folder, creating it on first start.
func instanceID(cfg *Config) (string, error) {
	if cfg.InstanceID != "" {
		return cfg.InstanceID, nil
	}
	path := filepath.Join(cfg.StateDir, "instance-id")
	if b, err := os.ReadFile(path); err == nil {
		if id := strings.TrimSpace(string(b)); id != "" {
			return id, nil
		}
	} else if !errors.Is(err, os.ErrNotExist) {
		return "", fmt.Errorf("read instance id: %w", err)
	}
	var buf [6]byte
	if _, err := rand.Read(buf[:]); err != nil {
		return "", err
	}
	host, _ := os.Hostname()
	id := strings.Map(func(r rune) rune {
		if r == '.' || r == '-' || r == '_' || r >= '0' && r <= '9' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' {
			return r
		}
		return '-'
	}, host) + "-" + hex.EncodeToString(buf[:])
	if err := os.WriteFile(path, []byte(id+"\n"), 0o644); err != nil {
		return "", fmt.Errorf("write instance id: %w", err)
	}
	return id, nil
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
	log := r.log.With("instance", id, "group", cfg.Group)
	r.log = log
	r.names = r.Names()

	secOpts, err := cfg.Security.KafkaOpts()
	if err != nil {
		return err
	}
	regOpts, err := cfg.Security.RegistryOpts()
	if err != nil {
		return err
	}
	base := append([]kgo.Opt{kgo.SeedBrokers(cfg.Brokers...), kgo.ClientID("sponsor-" + id), kgo.WithLogger(kgoLogger{log})}, cfg.KafkaOpts...)
	base = append(base, secOpts...)
	r.base = base
	r.admCl, err = kgo.NewClient(slices.Concat(base, r.kafkaMetrics(ClientAdmin))...)
	if err != nil {
		return fmt.Errorf("kafka client: %w", err)
	}
	defer r.admCl.Close()
	r.adm = kadm.NewClient(r.admCl)

	// A session timeout the coordinators refuse fails every join with
	// INVALID_SESSION_TIMEOUT, which the client retries for ever: say so
	// now, once, with the bound.
	bounds := brokerSessionBounds(ctx, r.adm)
	if err := bounds.check(cfg.SessionTimeout); err != nil {
		return err
	}
	cat := topics.Catalog{Names: r.names, Partitions: cfg.Partitions, ReplicationFactor: -1}
	r.nparts, err = cat.Ensure(ctx, r.adm, cfg.CreateTopics)
	if err != nil {
		return err
	}
	// A topic just created may take a moment to show in the metadata.
	for wait := time.Now().Add(15 * time.Second); ; {
		td, err := r.adm.ListTopics(ctx, r.names.Campaigns)
		if err != nil {
			return fmt.Errorf("describe %s: %w", r.names.Campaigns, err)
		}
		if r.ncamp = len(td[r.names.Campaigns].Partitions); r.ncamp > 0 {
			if it, err := r.adm.ListTopics(ctx, r.names.Interactions); err == nil {
				r.interactionsID = it[r.names.Interactions].ID
			}
			break
		}
		if time.Now().After(wait) {
			return fmt.Errorf("topic %s has no partitions", r.names.Campaigns)
		}
		time.Sleep(100 * time.Millisecond)
	}

	rc, err := sr.NewClient(append([]sr.ClientOpt{sr.URLs(cfg.Registry)}, regOpts...)...)
	if err != nil {
		return fmt.Errorf("schema registry client: %w", err)
	}
	serde, err := wire.New(ctx, rc, wire.Topics{Interactions: r.names.Interactions, Campaigns: r.names.Campaigns, Inbox: r.names.Inbox, Decisions: r.names.Decisions})
	if err != nil {
		return fmt.Errorf("schemas: %w", err)
	}
	pol, err := policy.New(cfg.Policy)
	if err != nil {
		return err
	}

	store, err := state.Open(filepath.Join(cfg.StateDir, "pebble"), state.Options{Logger: log})
	if err != nil {
		return err
	}
	r.view.set(store)
	defer func() {
		r.view.set(nil)
		if err := store.Close(); err != nil {
			log.Error("close state", "err", err)
		}
	}()

	bc, err := newBroadcast(r.names.Campaigns, log, slices.Concat(base, r.kafkaMetrics(ClientCampaigns)))
	if err != nil {
		return err
	}
	defer bc.close()
	bcCtx, stopBC := context.WithCancel(context.WithoutCancel(ctx))
	var bcDone sync.WaitGroup
	bcDone.Go(func() { bc.run(bcCtx) })
	defer func() { stopBC(); bc.close(); bcDone.Wait() }()

	r.env = &env{names: r.names, policy: pol, serde: serde, store: store, chunk: cfg.FanoutChunk, campaign: bc, unsafe: cfg.UnsafeNoTransactions,
		partitions: r.nparts, partitioner: topics.Partitioner(cfg.Partitioner), skew: cfg.MaxClockSkew.Milliseconds()}

	sessOpts := append(slices.Concat(base, r.kafkaMetrics(ClientSession)),
		kgo.ConsumerGroup(cfg.Group),
		kgo.ConsumeTopics(r.names.Interactions),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		kgo.RequireStableFetchOffsets(),
		kgo.KeepControlRecords(),
		kgo.SessionTimeout(cfg.SessionTimeout),
		kgo.HeartbeatInterval(cfg.HeartbeatInterval),
		kgo.RebalanceTimeout(cfg.RebalanceTimeout),
		kgo.BlockRebalanceOnPoll(),
		// Cooperative rebalancing (franz-go's default, pinned here): a
		// rebalance moves only the partitions that change owner, and
		// adjustOffsets relies on a partition kept across one being
		// offered again when its restore was interrupted.
		kgo.Balancers(kgo.CooperativeStickyBalancer()),
		kgo.RecordPartitioner(outputPartitioner{deadletter: r.names.DeadLetter}),
		kgo.ProducerLinger(5*time.Millisecond),
		// A produce that fails with a retriable error waits for a
		// metadata refresh, which franz-go holds back until the last one
		// is MetadataMinAge old (5 s by default). Under transaction
		// version 2 (Kafka 4's default) the first records of a
		// transaction can get CONCURRENT_TRANSACTIONS while the broker
		// still writes the previous one's markers: with the default, the
		// transaction then stalled about 4.5 s (seen in a 300k-contact
		// fan-out on Apache Kafka 4.4: 7 s instead of 2.3 s, one run in
		// two). 250 ms keeps such a retry short.
		kgo.MetadataMinAge(250*time.Millisecond),
		kgo.OnPartitionsAssigned(r.onAssigned),
		kgo.OnPartitionsRevoked(r.onRevoked),
		kgo.OnPartitionsLost(r.onRevoked),
		kgo.AdjustFetchOffsetsFn(r.adjustOffsets),
	)
	if !cfg.DynamicMembership {
		sessOpts = append(sessOpts, kgo.InstanceID(id))
	}
	txnID := cfg.Group + "-" + id
	if cfg.UnsafeNoTransactions {
		log.Warn("EXACTLY-ONCE IS OFF (UnsafeNoTransactions): a crash can lose or repeat inbox records; for negative-control tests only")
	}
	if err := r.openSession(ctx, sessOpts, txnID); err != nil {
		return err
	}
	log.Info("pipeline started", "interactions", r.names.Interactions, "partitions", r.nparts, "partitioner", cfg.Partitioner,
		"campaigns", r.names.Campaigns, "inbox", r.names.Inbox, "changelog", r.names.Changelog, "decisions", r.names.Decisions, "transactional_id", txnID,
		"security", cfg.Security, "static_member", !cfg.DynamicMembership)

	looping = true
	var fences []time.Time // when the producer was found fenced, for the last fenceWindow
	for {
		err = r.loop(ctx)
		r.ready.Store(false)
		r.closeSession()
		if !errors.Is(err, errProducerUnusable) || ctx.Err() != nil {
			break
		}
		// The producer's epoch was bumped under it (or franz-go keeps a
		// fatal error for it after such a fence). With one instance per
		// transactional id (the state folder's lock sees to that), the one
		// who bumped it is the transaction coordinator: it aborted a
		// transaction that outlived TransactionTimeout (a broker failover
		// can stall one that long), and under transaction.version 2
		// (KIP-890, Kafka 4.0's default) the client cannot recover that
		// producer. Do what Kafka Streams does: drop the tasks (their
		// state in Pebble is the last committed one), get a new producer
		// epoch and join again; the tasks are restored from their
		// checkpoints. If it keeps happening, another process is using
		// this transactional id: stop rather than fence it in turn.
		now := time.Now()
		fences = slices.DeleteFunc(append(fences, now), func(t time.Time) bool { return now.Sub(t) > fenceWindow })
		if len(fences) > maxFences {
			err = fmt.Errorf("%w (%d times in %s: is another instance running with instance id %q, e.g. a copy of this state folder?)", err, len(fences), fenceWindow, id)
			break
		}
		r.stats.ProducerResets.Add(1)
		log.Warn("transactional producer fenced or unusable; rejoining with a new producer epoch, tasks restored from their checkpoints",
			"err", err, "transactional_id", txnID, "resets_in_window", len(fences))
		if err = r.reopenSession(ctx, sessOpts, txnID); err != nil {
			if ctx.Err() != nil {
				err = nil // a shutdown during the rejoin: a clean stop
			}
			break
		}
	}
	// An instance that fails hands its partitions over too, unless the
	// failure is that another process uses its identity: leaving with
	// the instance id would remove that one's member instead.
	if !cfg.DynamicMembership && (r.leave.Load() || err != nil && !errors.Is(err, errProducerUnusable)) {
		r.leaveGroup(id)
	}
	log.Info("pipeline stopped", "err", err)
	return err
}

// leaveGroup removes the static member id from the group, as Kafka
// Streams' close with leaveGroup (or the admin client's
// removeMembersFromConsumerGroup) does: the group rebalances now and the
// other instances take its partitions, instead of after the session
// timeout. franz-go's Close does not leave for a static member, by design
// (a static member is expected back). The session is closed already: no
// transaction is open and nothing is consumed any more, so nothing can
// be lost by leaving. A failed leave is only logged: the partitions then
// move after the session timeout, as after a crash.
func (r *Runner) leaveGroup(id string) {
	ctx, cancel := context.WithTimeout(context.Background(), leaveWait)
	defer cancel()
	start := time.Now()
	resp, err := r.adm.LeaveGroup(ctx, kadm.LeaveGroup(r.cfg.Group).InstanceIDs(id).Reason("sponsor: leaving on shutdown"))
	if err == nil {
		err = resp.Error()
	}
	if err != nil {
		r.log.Warn("could not leave the group; the partitions move after the session timeout", "err", err, "session_timeout", r.cfg.SessionTimeout)
		return
	}
	r.log.Info("left the group: the other instances take the partitions now", "took", time.Since(start).Round(time.Millisecond))
}

// leaveWait bounds how long a stopping static member tries to leave.
const leaveWait = 5 * time.Second

// A fenced producer is reset at most maxFences times in fenceWindow; past
// that, the instance stops.
const (
	maxFences   = 3
	fenceWindow = 10 * time.Minute
)

// openSession creates the group session: transactional, or, for the
// negative-control tests only, a plain at-least-once client.
func (r *Runner) openSession(ctx context.Context, sessOpts []kgo.Opt, txnID string) error {
	if r.cfg.UnsafeNoTransactions {
		cl, err := kgo.NewClient(append(slices.Clone(sessOpts), kgo.AutoCommitInterval(500*time.Millisecond))...)
		if err != nil {
			return fmt.Errorf("group client: %w", err)
		}
		r.sess = plainSession{cl}
		return nil
	}
	s, err := kgo.NewGroupTransactSession(append(slices.Clone(sessOpts),
		kgo.TransactionalID(txnID),
		kgo.TransactionTimeout(r.cfg.TransactionTimeout),
	)...)
	if err != nil {
		return fmt.Errorf("group session: %w", err)
	}
	// Initialize the producer id now: reusing the transactional id fences
	// the previous incarnation and aborts the transaction it left open,
	// which would otherwise hold back the changelog's last stable offset
	// (and every restore) until it timed out.
	if _, _, err := s.Client().ProducerID(ctx); err != nil {
		s.Close()
		return fmt.Errorf("initialize transactional producer %s: %w", txnID, err)
	}
	r.sess = s
	return nil
}

// reopenSession opens a new session after a fenced one, retrying while the
// brokers are unreachable (the fence may come with a broker outage) for up
// to reopenWait.
func (r *Runner) reopenSession(ctx context.Context, sessOpts []kgo.Opt, txnID string) error {
	deadline := time.Now().Add(reopenWait)
	for wait := 500 * time.Millisecond; ; wait = min(2*wait, 5*time.Second) {
		err := r.openSession(ctx, sessOpts, txnID)
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("rejoin after a fenced producer: %w", err)
		}
		r.log.Warn("rejoin after a fenced producer failed; retrying", "err", err, "retry_in", wait)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(wait):
		}
	}
}

// reopenWait bounds how long reopenSession retries.
const reopenWait = 2 * time.Minute

// closeSession ends the group session and drops every task: their state in
// Pebble is what their last committed transaction left.
func (r *Runner) closeSession() {
	// Close leaves the group for a dynamic member, so the partitions move
	// at once; a static member stays (Run may leave for it afterwards). Leaving waits for a join in flight, which the
	// broker may hold until the rebalance timeout when other members are
	// stopping too: give up after a while; the group then notices after the
	// session timeout, and nothing is lost (every transaction is ended).
	sess := r.sess
	closed := make(chan struct{})
	go func() {
		sess.Close()
		close(closed)
	}()
	select {
	case <-closed:
	case <-time.After(closeWait):
		r.log.Warn("leaving the group is taking too long; stopping anyway", "waited", closeWait)
	}
	for p, t := range r.tasks {
		t.discard()
		delete(r.tasks, p)
	}
	r.handMu.Lock()
	clear(r.incoming)
	clear(r.revoked)
	r.restoreErr = nil
	r.handMu.Unlock()
	r.joined.Store(false)
	r.owned.Store(nil)
	r.stats.TasksAssigned.Store(0)
	r.stats.setLag(nil)
}

// closeWait bounds how long a stopping instance waits to leave its group.
const closeWait = 10 * time.Second

// outputPartitioner sends inbox, decisions and changelog records to the
// partition the task set (the task's own: co-partitioning), and dead letters
// by key hash. The outputs need no partitioner of their own: a task only
// holds users whose key maps to its partition under Config.Partitioner
// (task.decode dead-letters the others), so a user's output records are on
// the partition of the user's interactions whichever partitioner the
// platform uses. Where a dead letter goes is no part of the contract.
type outputPartitioner struct{ deadletter string }

func (o outputPartitioner) ForTopic(t string) kgo.TopicPartitioner {
	if t == o.deadletter {
		return kgo.StickyKeyPartitioner(nil).ForTopic(t)
	}
	return kgo.ManualPartitioner().ForTopic(t)
}

func (r *Runner) onAssigned(_ context.Context, _ *kgo.Client, assigned map[string][]int32) {
	r.log.Info("partitions assigned", "partitions", assigned[r.names.Interactions])
	r.joined.Store(true)
}

func (r *Runner) onRevoked(_ context.Context, _ *kgo.Client, revoked map[string][]int32) {
	ps := revoked[r.names.Interactions]
	r.log.Info("partitions revoked", "partitions", ps)
	r.handMu.Lock()
	for _, p := range ps {
		r.revoked[p] = true
		delete(r.incoming, p)
	}
	r.handMu.Unlock()
}

// adjustOffsets runs when partitions are assigned, before any record of
// theirs is fetched: it restores each new task from the changelog and starts
// fetching at the offset the restored state has processed up to.
func (r *Runner) adjustOffsets(ctx context.Context, offsets map[string]map[int32]kgo.Offset) (map[string]map[int32]kgo.Offset, error) {
	parts := offsets[r.names.Interactions]
	if len(parts) == 0 {
		return offsets, nil
	}
	r.restoring.Add(1)
	r.ready.Store(false)
	defer r.restoring.Add(-1)
	// The committed offsets (fetched stable: no transaction pending on
	// them), to check the restored state is not behind them.
	committed := map[int32]int64{}
	for p, o := range parts {
		if eo := o.EpochOffset(); eo.Offset >= 0 {
			committed[p] = eo.Offset
		}
	}
	type result struct {
		p    int32
		t    *task
		n    int64
		took time.Duration
		err  error
	}
	results := make(chan result, len(parts))
	sem := make(chan struct{}, 4) // restores in parallel
	var wg sync.WaitGroup
	r.stats.RestoringPartitions.Add(int64(len(parts)))
	for p := range parts {
		wg.Go(func() {
			var restored time.Duration // how long the restore took, once it succeeded
			defer func() {
				r.stats.restoreEnded(p, restored)
				r.stats.RestoringPartitions.Add(-1)
			}()
			sem <- struct{}{}
			defer func() { <-sem }()
			start := time.Now()
			c, ok := committed[p]
			if !ok {
				c = -1
			}
			var n int64
			var err error
			if !r.cfg.UnsafeNoTransactions {
				n, _, err = restoreUntil(ctx, r.adm, r.env.store, r.names.Changelog, p, c, r.base, r.stats.restoreProgress, r.log)
			}
			if err != nil {
				results <- result{p: p, err: err}
				return
			}
			if !r.cfg.UnsafeNoTransactions {
				restored = max(time.Since(start), time.Nanosecond)
			}
			t, err := newTask(p, r.env)
			results <- result{p: p, t: t, n: n, took: time.Since(start), err: err}
		})
	}
	wg.Wait()
	close(results)
	if err := ctx.Err(); err != nil {
		// The session began revoking (a new rebalance) during the
		// restore. Hand nothing over and return the error: franz-go then
		// keeps these partitions among those whose offsets it still has
		// to fetch, and runs this function for them again in the next
		// session if this member keeps them (cooperative rebalancing);
		// if they move, their next owner restores them. Returning the
		// offsets instead would have them consumed with no task: a
		// partition kept across the rebalance then stalled for good
		// (TestBrokerKill saw it: the restore of p0 interrupted, p0
		// kept, never processed again).
		var ps []int32
		for p := range parts {
			ps = append(ps, p)
		}
		slices.Sort(ps)
		r.log.Info("restore interrupted by a rebalance; the partitions are restored again if they stay", "partitions", ps, "err", err)
		return nil, fmt.Errorf("restore interrupted by a rebalance: %w", err)
	}
	out := offsets[r.names.Interactions]
	var errs []error
	for res := range results {
		if res.err != nil {
			errs = append(errs, fmt.Errorf("restore partition %d: %w", res.p, res.err))
			continue
		}
		r.stats.RestoredRecords.Add(res.n)
		rate := 0.0
		if s := res.took.Seconds(); s > 0 {
			rate = float64(res.n) / s
		}
		r.log.Info("task restored", "partition", res.p, "changelog_records", res.n, "took", res.took.Round(time.Millisecond),
			"records_per_sec", int64(rate), "input_offset", res.t.part.Input(), "campaigns", res.t.part.Campaigns(),
			"contacts", res.t.contacts.Keys(), "contact_filter_bytes", res.t.contacts.Bytes())
		if in := res.t.part.Input(); in >= 0 && !r.cfg.UnsafeNoTransactions {
			out[res.p] = kgo.NewOffset().At(in).WithEpoch(-1)
		}
		r.handMu.Lock()
		r.incoming[res.p] = res.t
		delete(r.revoked, res.p)
		r.handMu.Unlock()
	}
	if len(errs) > 0 {
		// Returning an error would leave the partitions unconsumed; the
		// loop sees the failure and stops the instance so the group moves
		// them elsewhere.
		err := errors.Join(errs...)
		r.log.Error("restore failed", "err", err)
		r.handMu.Lock()
		r.restoreErr = err
		r.handMu.Unlock()
	}
	return offsets, nil
}

// kgoLogger passes franz-go's warnings and errors to the runner's logger;
// its info and debug lines are too chatty for an operator's log.
type kgoLogger struct{ l *slog.Logger }

func (k kgoLogger) Level() kgo.LogLevel { return kgo.LogLevelWarn }

func (k kgoLogger) Log(level kgo.LogLevel, msg string, keyvals ...any) {
	lv := slog.LevelWarn
	if level == kgo.LogLevelError {
		lv = slog.LevelError
	}
	k.l.Log(context.Background(), lv, "kafka client: "+msg, keyvals...)
}
