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
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sponsored/sponsor/topics"
)

// session is what the loop needs of its Kafka client: a
// *kgo.GroupTransactSession, or, only for the negative-control tests, a
// plain at-least-once client (Config.UnsafeNoTransactions).
type session interface {
	PollRecords(ctx context.Context, maxPollRecords int) kgo.Fetches
	AllowRebalance()
	Client() *kgo.Client
	Begin() error
	End(ctx context.Context, commit kgo.TransactionEndTry) (bool, error)
	Produce(ctx context.Context, r *kgo.Record, promise func(*kgo.Record, error))
	Close()
}

// plainSession has no transactions: records are produced and flushed, and
// offsets are auto-committed on their own schedule. A crash can then lose
// or repeat outputs: it exists to prove the crash tests can see that.
type plainSession struct{ cl *kgo.Client }

func (s plainSession) PollRecords(ctx context.Context, n int) kgo.Fetches {
	return s.cl.PollRecords(ctx, n)
}
func (s plainSession) AllowRebalance()     { s.cl.AllowRebalance() }
func (s plainSession) Client() *kgo.Client { return s.cl }
func (s plainSession) Begin() error        { return nil }
func (s plainSession) Close()              { s.cl.Close() }
func (s plainSession) Produce(ctx context.Context, r *kgo.Record, promise func(*kgo.Record, error)) {
	s.cl.Produce(ctx, r, promise)
}
func (s plainSession) End(ctx context.Context, commit kgo.TransactionEndTry) (bool, error) {
	if err := s.cl.Flush(ctx); err != nil {
		return false, err
	}
	return bool(commit), nil
}

// member is the instance's place in its group: it opens the session (the
// group member and transactional producer), opens a new one after the
// producer was fenced, closes it, and makes a static member leave.
//
// Concurrency: only Run's goroutine calls its methods, and it swaps sess
// (open, reopen) only while the loop is not running; the loop uses the
// session it is given for one run.
type member struct {
	cfg   *Config
	log   *slog.Logger
	stats *Stats
	adm   *kadm.Client
	id    string    // the instance id: group.instance.id of a static member
	txnID string    // the transactional id: Group + "-" + id
	opts  []kgo.Opt // the session client's options (groupOpts)

	sess   session
	fences []time.Time // when the producer was found fenced, for the last fenceWindow
}

// groupOpts returns the options of the session's client on top of base: the
// group over the interactions topic, read_committed, the rebalance
// callbacks of h, the output partitioner, and static membership with
// instance id id unless Config.DynamicMembership. standby, if not nil, is
// the balancer offered first (Config.StandbyReplicas), cooperative-sticky
// the fallback.
func groupOpts(cfg *Config, names topics.Names, id string, base []kgo.Opt, h *handover, standby kgo.GroupBalancer) []kgo.Opt {
	balancers := []kgo.GroupBalancer{kgo.CooperativeStickyBalancer()}
	if standby != nil {
		balancers = append([]kgo.GroupBalancer{standby}, balancers...)
	}
	codecs, err := producerCompression(cfg.Compression)
	if err != nil { // Config.Validate refuses it before any client is made
		codecs, _ = producerCompression(DefaultCompression)
	}
	opts := append(slices.Clone(base),
		kgo.ConsumerGroup(cfg.Run().ConsumerGroup()),
		kgo.ConsumeTopics(names.Interactions),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		// A partition assigned while a fetch is parked on the broker is
		// fetched only after that fetch returns: with franz-go's 5 s
		// default, a failover's partitions waited up to 5 s after their
		// restore (seen on Kafka 4.4: processing again 10.3 s after an
		// owner's SIGKILL with a 6 s session timeout, its restore done at
		// 6.3 s). 500 ms is the Java consumer's fetch.max.wait.ms.
		kgo.FetchMaxWait(sessionFetchMaxWait),
		kgo.RequireStableFetchOffsets(),
		kgo.KeepControlRecords(),
		kgo.SessionTimeout(cfg.SessionTimeout),
		kgo.HeartbeatInterval(cfg.HeartbeatInterval),
		kgo.RebalanceTimeout(cfg.RebalanceTimeout),
		kgo.BlockRebalanceOnPoll(),
		// Cooperative rebalancing (franz-go's default, pinned here): a
		// rebalance moves only the partitions that change owner, and
		// adjustOffsets relies on a partition kept across one being
		// offered again when its restore was interrupted. The standby
		// balancer is cooperative and sticky too.
		kgo.Balancers(balancers...),
		kgo.RecordPartitioner(outputPartitioner{deadletter: names.DeadLetter}),
		kgo.ProducerLinger(5*time.Millisecond),
		kgo.ProducerBatchCompression(codecs...),
		kgo.MaxBufferedRecords(producerBufferedRecords),
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
		kgo.OnPartitionsAssigned(h.onAssigned),
		kgo.OnPartitionsRevoked(h.onRevoked),
		kgo.OnPartitionsLost(h.onRevoked),
		kgo.AdjustFetchOffsetsFn(h.adjustOffsets),
	)
	if !cfg.DynamicMembership {
		opts = append(opts, kgo.InstanceID(id))
	}
	return opts
}

// DefaultCompression is Config.Compression's default.
const DefaultCompression = "zstd"

// producerCompression returns the codecs of Config.Compression's name, in
// order of preference. zstd is at its fastest level: its default level
// saves 2 more bytes per changelog record for twice the CPU (0.56 us per
// record in batches of 800, against 0.23 at the fastest level and 0.07 for
// Snappy), and Snappy follows it for a broker before zstd (Kafka 2.1).
// With realistic ids (e2e.BenchmarkBytesPerDelivery, docs/performance.md,
// the bytes round) a changelog record takes 34 bytes with zstd instead of
// Snappy's 46, and a fan-out's delivery 103 bytes of inbox, changelog and
// decisions (one record per chunk) instead of 149.
func producerCompression(name string) ([]kgo.CompressionCodec, error) {
	switch name {
	case "zstd", "": // "": a Config without its defaults
		return []kgo.CompressionCodec{kgo.ZstdCompression().WithLevel(1), kgo.SnappyCompression()}, nil
	case "lz4":
		return []kgo.CompressionCodec{kgo.Lz4Compression()}, nil
	case "snappy":
		return []kgo.CompressionCodec{kgo.SnappyCompression()}, nil
	case "none":
		return []kgo.CompressionCodec{kgo.NoCompression()}, nil
	}
	return nil, fmt.Errorf("want zstd, lz4, snappy or none, got %q", name)
}

// producerBufferedRecords is the most records the session's producer holds
// before a Produce blocks (franz-go's default is 10,000). A transaction's
// records are all in the tasks' memory until it ends anyway, so the bound
// costs no memory; with 10,000 a fan-out's tasks, which hand their records
// over while they work (task.send), waited for the broker's acknowledgements
// every 10,000 records of the 60,000 a transaction of 6 partitions carries.
// Measured, a 1M-contact fan-out on kfake, two interleaved pairs: 2.63 and
// 2.57 us of CPU per delivery against 2.84 and 2.88, 671k and 664k
// deliveries/s against 604k and 592k (docs/performance.md).
const producerBufferedRecords = 1 << 18

// sessionFetchMaxWait is how long the broker may hold the session's fetch
// for data.
const sessionFetchMaxWait = 500 * time.Millisecond

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

// A fenced producer is reset at most maxFences times in fenceWindow; past
// that, the instance stops.
const (
	maxFences   = 3
	fenceWindow = 10 * time.Minute
)

// rejoin opens a new session after the loop ended with err, an
// errProducerUnusable, and reports whether the loop may run again. When it
// may not, the error is why the instance stops (nil: a shutdown during the
// rejoin, a clean stop).
func (m *member) rejoin(ctx context.Context, err error) (bool, error) {
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
	m.fences = slices.DeleteFunc(append(m.fences, now), func(t time.Time) bool { return now.Sub(t) > fenceWindow })
	if len(m.fences) > maxFences {
		return false, fmt.Errorf("%w (%d times in %s: is another instance running with instance id %q, e.g. a copy of this state folder?)", err, len(m.fences), fenceWindow, m.id)
	}
	m.stats.ProducerResets.Add(1)
	m.log.Warn("transactional producer fenced or unusable; rejoining with a new producer epoch, tasks restored from their checkpoints",
		"err", err, "transactional_id", m.txnID, "resets_in_window", len(m.fences))
	if err := m.reopen(ctx); err != nil {
		if ctx.Err() != nil {
			return false, nil // a shutdown during the rejoin: a clean stop
		}
		return false, err
	}
	return true, nil
}

// stop ends the instance's membership as Run ends with err: an instance
// that fails hands its partitions over too, unless the failure is that
// another process uses its identity (leaving with the instance id would
// remove that one's member instead). leave says whether a static member
// was asked to leave (Config.LeaveGroupOnShutdown).
func (m *member) stop(err error, leave bool) {
	if !m.cfg.DynamicMembership && (leave || err != nil && !errors.Is(err, errProducerUnusable)) {
		m.leaveGroup()
	}
}

// leaveGroup removes the static member from the group, as Kafka
// Streams' close with leaveGroup (or the admin client's
// removeMembersFromConsumerGroup) does: the group rebalances now and the
// other instances take its partitions, instead of after the session
// timeout. franz-go's Close does not leave for a static member, by design
// (a static member is expected back). The session is closed already: no
// transaction is open and nothing is consumed any more, so nothing can
// be lost by leaving. A failed leave is only logged: the partitions then
// move after the session timeout, as after a crash.
func (m *member) leaveGroup() {
	ctx, cancel := context.WithTimeout(context.Background(), leaveWait)
	defer cancel()
	start := time.Now()
	resp, err := m.adm.LeaveGroup(ctx, kadm.LeaveGroup(m.cfg.Run().ConsumerGroup()).InstanceIDs(m.id).Reason("sponsor: leaving on shutdown"))
	if err == nil {
		err = resp.Error()
	}
	if err != nil {
		m.log.Warn("could not leave the group; the partitions move after the session timeout", "err", err, "session_timeout", m.cfg.SessionTimeout)
		return
	}
	m.log.Info("left the group: the other instances take the partitions now", "took", time.Since(start).Round(time.Millisecond))
}

// leaveWait bounds how long a stopping static member tries to leave.
const leaveWait = 5 * time.Second

// open creates the group session: transactional, or, for the
// negative-control tests only, a plain at-least-once client.
func (m *member) open(ctx context.Context) error {
	if m.cfg.UnsafeNoTransactions {
		cl, err := kgo.NewClient(append(slices.Clone(m.opts), kgo.AutoCommitInterval(500*time.Millisecond))...)
		if err != nil {
			return fmt.Errorf("group client: %w", err)
		}
		m.sess = plainSession{cl}
		return nil
	}
	s, err := kgo.NewGroupTransactSession(append(slices.Clone(m.opts),
		kgo.TransactionalID(m.txnID),
		kgo.TransactionTimeout(m.cfg.TransactionTimeout),
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
		return fmt.Errorf("initialize transactional producer %s: %w", m.txnID, err)
	}
	m.sess = s
	return nil
}

// reopen opens a new session after a fenced one, retrying while the
// brokers are unreachable (the fence may come with a broker outage) for up
// to reopenWait.
func (m *member) reopen(ctx context.Context) error {
	deadline := time.Now().Add(reopenWait)
	for wait := 500 * time.Millisecond; ; wait = min(2*wait, 5*time.Second) {
		err := m.open(ctx)
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("rejoin after a fenced producer: %w", err)
		}
		m.log.Warn("rejoin after a fenced producer failed; retrying", "err", err, "retry_in", wait)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(wait):
		}
	}
}

// reopenWait bounds how long reopen retries.
const reopenWait = 2 * time.Minute

// close ends the group session. Close leaves the group for a dynamic
// member, so the partitions move at once; a static member stays (Run may
// leave for it afterwards: stop). Leaving waits for a join in flight,
// which the broker may hold until the rebalance timeout when other members
// are stopping too: give up after a while; the group then notices after
// the session timeout, and nothing is lost (every transaction is ended).
func (m *member) close() {
	sess := m.sess
	closed := make(chan struct{})
	go func() {
		sess.Close()
		close(closed)
	}()
	select {
	case <-closed:
	case <-time.After(closeWait):
		m.log.Warn("leaving the group is taking too long; stopping anyway", "waited", closeWait)
	}
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
