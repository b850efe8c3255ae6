package pipeline

import (
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"time"

	"github.com/sponsored/sponsor/kafkaconn"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sponsored/sponsor/policy"
	"github.com/sponsored/sponsor/topics"
)

// DefaultMaxPollRecords is Config.MaxPollRecords's default: the most
// interactions one transaction processes.
const DefaultMaxPollRecords = 5000

// DefaultFanoutChunk is Config.FanoutChunk's default: the most decisions a
// task makes in one transaction.
const DefaultFanoutChunk = 5000

// StoreDir is the folder of the Pebble store inside an instance's state
// folder (Config.StateDir): where `sponsor run` keeps it, and where the
// tools that read or rebuild a state folder find it.
func StoreDir(stateDir string) string { return filepath.Join(stateDir, "pebble") }

// DefaultMaxClockSkew is Config.MaxClockSkew's default: a phone's clock
// that is a few minutes off is common; hours off is a wrong clock.
const DefaultMaxClockSkew = 5 * time.Minute

// DefaultHeartbeatInterval is the longest default Config.HeartbeatInterval
// (franz-go's own default).
const DefaultHeartbeatInterval = 3 * time.Second

// DefaultMinSessionTimeout is Kafka's default group.min.session.timeout.ms:
// what Run checks Config.SessionTimeout against when it cannot read the
// brokers' own.
const DefaultMinSessionTimeout = 6 * time.Second

// Config configures a Runner. Zero values take the documented defaults
// (EnsureDefaults); Validate names the first invalid field.
type Config struct {
	// Brokers are the Kafka seed brokers, host:port. Required.
	Brokers []string
	// Registry is the schema registry's base URL. Required.
	Registry string
	// StateDir is the folder of the Pebble store and the instance identity.
	// Required.
	StateDir string
	// Group is the consumer group; instances with the same group share the
	// partitions. Default "sponsor".
	Group string
	// InstanceID is the instance's stable identity: its transactional id is
	// Group+"-"+InstanceID (a shadow run's group, see Shadow, in its place),
	// so a restart fences its previous incarnation at once. Default: read from (or created in) StateDir/instance-id.
	InstanceID string
	// DynamicMembership makes the instance a dynamic group member (no
	// group.instance.id), as before static membership was the default: a
	// stop always leaves the group, so its partitions move at once, and a
	// restart joins as a new member, which rebalances the group twice (the
	// leave, the join). Default off: the instance is a static member
	// (KIP-345) whose group.instance.id is InstanceID, so a restart within
	// SessionTimeout takes the place of its previous incarnation at once,
	// with its partitions and without a rebalance, and a stop leaves the
	// group only as LeaveGroupOnShutdown says.
	DynamicMembership bool
	// LeaveGroupOnShutdown makes a static member leave the group, with its
	// instance id, when Run ends, as Kafka Streams' close with leaveGroup
	// does: its partitions go to the other instances at once instead of
	// after SessionTimeout. Set it when scaling in; Runner.LeaveGroupOnShutdown
	// sets it while running (sponsor run does on SIGUSR1). Default off: a
	// stopped static member keeps its partitions for SessionTimeout, so
	// that a rolling restart does not rebalance. A Run that ends with an
	// error always leaves (a failed instance should not hold partitions),
	// and a dynamic member always leaves.
	LeaveGroupOnShutdown bool
	// StandbyReplicas is how many other instances keep a warm copy of
	// each partition's state, as Kafka Streams' num.standby.replicas:
	// they follow its changelog partition into their own store, so that
	// when its owner dies for good, the partition moves to one of them
	// (the group's balancer prefers the member whose checkpoint of it is
	// furthest) and its restore only reads the tail. At most the group's
	// other members hold one. Every instance of the group must be
	// configured alike: the standby balancer is used only when all offer
	// it, else the group stays on cooperative-sticky with no standby.
	// Ignored with UnsafeNoTransactions (no changelog). Default 0: none.
	StandbyReplicas int
	// TopicPrefix is prepended to every topic name. Default "".
	TopicPrefix string
	// CreateTopics also creates the input topics when missing, with
	// Partitions partitions (development and tests). Default off: inputs
	// must exist.
	CreateTopics bool
	// Partitions is the partition count of the topics CreateTopics creates.
	// Default 6.
	Partitions int32
	// Partitioner is the platform's partitioner, which every producer of
	// interactions must use (topics.Partitioner): "murmur2" (Kafka's Java
	// client, franz-go, librdkafka's murmur2_random) or "crc32"
	// (librdkafka's consistent and consistent_random). An interaction on
	// any other partition than its key maps to is dead-lettered
	// (deadletter.ReasonWrongPartition), not processed. Default "murmur2".
	Partitioner string
	// Policy is the configurable part of the rules. Default
	// policy.DefaultConfig().
	Policy policy.Config
	// FanoutChunk is the most (campaign, user) decisions a task makes in
	// one transaction; a larger fan-out continues in the next ones, its
	// cursor in the task's state. Default DefaultFanoutChunk.
	FanoutChunk int
	// MaxPollRecords bounds the interactions processed in one transaction.
	// Default DefaultMaxPollRecords.
	MaxPollRecords int
	// Tick is how often an idle instance wakes up to check the wall clock
	// for campaigns due on caught-up partitions. Default 250ms.
	Tick time.Duration
	// SessionTimeout is the group session timeout: how fast a crashed
	// instance's partitions move, and how long a stopped static member may
	// take to come back without a rebalance. It must be within the
	// brokers' group.min.session.timeout.ms and group.max.session.timeout.ms
	// (6s and 30 min by default): Run reads them from the brokers' config
	// and refuses to start outside them (against 6s when the config cannot
	// be read), where the brokers would refuse every join. Default 10s.
	SessionTimeout time.Duration
	// HeartbeatInterval is how often the instance heartbeats to its group
	// coordinator; it must be at most a third of SessionTimeout, so that
	// two lost heartbeats do not expire the session. Default the smaller
	// of SessionTimeout/3 and 3s (franz-go's default).
	HeartbeatInterval time.Duration
	// RebalanceTimeout bounds a rebalance, restores included. Default 60s.
	RebalanceTimeout time.Duration
	// TransactionTimeout is the broker-side timeout of an open transaction.
	// Default 20s.
	TransactionTimeout time.Duration
	// MaxClockSkew is how far ahead of its record's timestamp (CreateTime,
	// set by the producing client, or LogAppendTime) and of the wall clock
	// an interaction's occurred_at may be. One further ahead, from a client
	// with a wrong clock, would move the partition's stream time and fire
	// the campaigns due up to it too early: it goes to the dead-letter
	// topic instead (deadletter.ReasonClockSkew), and a redrive once its time has come
	// applies it. So the stream time never passes the wall clock plus
	// MaxClockSkew. Default DefaultMaxClockSkew; negative turns the check
	// off.
	MaxClockSkew time.Duration
	// Logger receives the runtime's logs. Default slog.Default().
	Logger *slog.Logger
	// Now is the wall clock, used only to fire due campaigns on quiet,
	// caught-up partitions. Default time.Now.
	Now func() time.Time
	// Shadow, when set, makes this a shadow run of the pipeline of Group:
	// it reads the same inputs under its own consumer group
	// (Group+"-shadow-"+Shadow), with its own state, and writes to its own
	// inbox, dead-letter, decisions and changelog topics, which no consumer
	// of the real pipeline reads (all derived by topics.Run, see
	// Config.Run). Group stays the real pipeline's.
	// A what-if: run it from the start with other rules or another version,
	// then compare with `sponsor diff`. Default "": the real pipeline.
	Shadow string
	// NoDecisions turns the audit trail off: no record on the decisions
	// topic. Default off: every decision, delivered or suppressed and why,
	// is written in the transaction that makes it, one record per chunk of
	// a fan-out (at most FanoutChunk candidates each).
	NoDecisions bool
	// Compression is the codec of the record batches the pipeline writes
	// (inbox, changelog, decisions, dead letters): "zstd" (the default, at
	// its fastest level), "lz4", "snappy" (franz-go's default) or "none".
	// zstd stores a fan-out's delivery in 103 bytes over the three topics
	// where Snappy takes 149 (ids that are random shrink only under an entropy
	// coder; lz4 gains nothing over Snappy), for 0.5-1 us more CPU per
	// delivery of a fan-out on Apache Kafka; the steady state showed no
	// difference (docs/performance.md, the bytes round).
	Compression string
	// DecisionsRetention is how long the decisions topic keeps records
	// (its retention.ms) when Run creates it, independent of the inbox's
	// (the broker's default, the downstream consumers' decision): the audit
	// trail's horizon. Negative keeps them for ever (retention.ms -1). An
	// existing topic is not altered: change its retention.ms with the
	// Kafka tools. Default topics.DecisionsRetention (90 days).
	DecisionsRetention time.Duration
	// NoFence turns off fencing dead instances' transactions: by default,
	// when partitions are assigned, the open transaction of an instance of
	// the group that is no longer a member (static membership only) and
	// holds one of them is aborted by initialising a producer with its
	// transactional id, so the new owner need not wait for the transaction
	// timeout. Default false (fencing on).
	NoFence bool
	// UnsafeNoTransactions turns exactly-once off: no transactions, no
	// changelog, offsets auto-committed, state only in Pebble (no WAL). A
	// crash then loses or repeats inbox records. It exists only so the crash
	// tests can prove their checker sees that (a negative control); never
	// use it in production.
	UnsafeNoTransactions bool
	// KafkaOpts are extra franz-go options added to every client (dialers,
	// tuning); TLS and SASL belong in Security.
	KafkaOpts []kgo.Opt
	// Security is TLS and SASL to Kafka and authentication and TLS to the
	// schema registry. Default: none (plaintext, unauthenticated).
	Security kafkaconn.Security
}

// EnsureDefaults fills the zero fields of c with their defaults.
func (c *Config) EnsureDefaults() {
	if c.Group == "" {
		c.Group = topics.DefaultGroup
	}
	if c.Partitions == 0 {
		c.Partitions = 6
	}
	if c.Partitioner == "" {
		c.Partitioner = string(topics.DefaultPartitioner)
	}
	if c.Policy == (policy.Config{}) {
		c.Policy = policy.DefaultConfig()
	}
	if c.DecisionsRetention == 0 {
		c.DecisionsRetention = topics.DecisionsRetention
	}
	if c.FanoutChunk == 0 {
		c.FanoutChunk = DefaultFanoutChunk
	}
	if c.MaxPollRecords == 0 {
		c.MaxPollRecords = DefaultMaxPollRecords
	}
	if c.Tick == 0 {
		c.Tick = 250 * time.Millisecond
	}
	if c.SessionTimeout == 0 {
		c.SessionTimeout = 10 * time.Second
	}
	if c.HeartbeatInterval == 0 {
		c.HeartbeatInterval = min(c.SessionTimeout/3, DefaultHeartbeatInterval)
	}
	if c.RebalanceTimeout == 0 {
		c.RebalanceTimeout = 60 * time.Second
	}
	if c.TransactionTimeout == 0 {
		c.TransactionTimeout = 20 * time.Second
	}
	if c.MaxClockSkew == 0 {
		c.MaxClockSkew = DefaultMaxClockSkew
	}
	if c.Compression == "" {
		c.Compression = DefaultCompression
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.Now == nil {
		c.Now = time.Now
	}
}

// Run returns the run of the pipeline c configures (TopicPrefix, Group,
// Shadow), from which every name it uses is derived: its topics, its
// consumer group and its transactional id.
func (c *Config) Run() topics.Run {
	return topics.Run{Prefix: c.TopicPrefix, Group: c.Group, Shadow: c.Shadow}
}

// Validate reports the first invalid field of c.
func (c *Config) Validate() error {
	var errs []error
	if len(c.Brokers) == 0 {
		errs = append(errs, errors.New("Brokers: at least one broker is required (--brokers)"))
	}
	if c.Registry == "" {
		errs = append(errs, errors.New("Registry: the schema registry URL is required (--registry)"))
	}
	if c.StateDir == "" {
		errs = append(errs, errors.New("StateDir: a state folder is required (--state-dir)"))
	}
	if err := c.Run().Validate(); err != nil {
		errs = append(errs, fmt.Errorf("Shadow: %w", err))
	}
	if c.Partitions < 1 {
		errs = append(errs, fmt.Errorf("Partitions: must be positive, got %d", c.Partitions))
	}
	if err := topics.Partitioner(c.Partitioner).Validate(); err != nil {
		errs = append(errs, fmt.Errorf("Partitioner: %w (--partitioner)", err))
	}
	if c.StandbyReplicas < 0 {
		errs = append(errs, fmt.Errorf("StandbyReplicas: must be 0 or more, got %d (--standby-replicas)", c.StandbyReplicas))
	}
	if c.FanoutChunk < 1 {
		errs = append(errs, fmt.Errorf("FanoutChunk: must be positive, got %d", c.FanoutChunk))
	}
	if c.MaxPollRecords < 1 {
		errs = append(errs, fmt.Errorf("MaxPollRecords: must be positive, got %d", c.MaxPollRecords))
	}
	if c.Tick <= 0 || c.SessionTimeout <= 0 || c.RebalanceTimeout <= 0 || c.TransactionTimeout <= 0 {
		errs = append(errs, errors.New("Tick, SessionTimeout, RebalanceTimeout, TransactionTimeout: must be positive"))
	}
	if c.HeartbeatInterval <= 0 || c.SessionTimeout > 0 && c.HeartbeatInterval > c.SessionTimeout/3 {
		errs = append(errs, fmt.Errorf("HeartbeatInterval: must be positive and at most a third of SessionTimeout (%s), got %s (--heartbeat-interval)", c.SessionTimeout, c.HeartbeatInterval))
	}
	if c.MaxClockSkew > 0 && c.MaxClockSkew < time.Millisecond {
		errs = append(errs, fmt.Errorf("MaxClockSkew: must be at least 1ms (or negative: off), got %s (--max-clock-skew)", c.MaxClockSkew))
	}
	if _, err := producerCompression(c.Compression); err != nil {
		errs = append(errs, fmt.Errorf("Compression: %w (--compression)", err))
	}
	if err := c.Policy.Validate(); err != nil {
		errs = append(errs, err)
	}
	if err := c.Security.Validate(); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}
