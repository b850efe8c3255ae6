package main

import (
	"flag"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/sponsored/sponsor/pipeline"
	"github.com/sponsored/sponsor/policy"
	"github.com/sponsored/sponsor/topics"
)

// httpEndpoints are what --http serves (pipeline.Runner.Handler).
const httpEndpoints = "/metrics, /healthz, /readyz and /state/user"

// pipelineFlags are the flags shared by run and dev.
type pipelineFlags struct {
	cfg            pipeline.Config
	brokers        string
	httpAddr       string
	logFormat      string
	logLevel       string
	userCap        int
	gap, retention time.Duration
	grace          time.Duration
	decisions      bool
	static         bool
}

func (f *pipelineFlags) register(fs *flag.FlagSet, defaultHTTP string) {
	registerGroup(fs, &f.cfg.Group, "consumer group; instances with the same group share the partitions")
	fs.StringVar(&f.cfg.InstanceID, "instance-id", "", "stable instance identity (default: kept in the state folder)")
	fs.BoolVar(&f.static, "static", true, "join as a static group member with the instance id (the default): a restart within the session timeout does not rebalance, and SIGTERM does not leave the group; --static=false is --dynamic")
	fs.BoolVar(&f.cfg.DynamicMembership, "dynamic", false, "join as a dynamic group member (no instance id in the group): SIGTERM leaves the group and a restart rebalances")
	fs.BoolVar(&f.cfg.LeaveGroupOnShutdown, "leave-group-on-shutdown", false, "a static member leaves the group on SIGTERM, so its partitions move at once (scaling in); without it only SIGUSR1 does")
	fs.BoolVar(&f.cfg.NoFence, "no-fence", false, "do not fence the open transaction of a dead instance of the group when taking its partitions (the new owner then waits for the transaction timeout); fencing needs static membership")
	fs.IntVar(&f.cfg.StandbyReplicas, "standby-replicas", 0, "warm standby replicas per partition, as Kafka Streams' num.standby.replicas: this many other instances follow each partition's changelog into their own state, so a partition whose owner dies moves to one of them and restores only the tail (at most the other instances; set it alike on every instance of the group; 0: none)")
	registerTopicPrefix(fs, &f.cfg.TopicPrefix, "prefix of every topic name")
	registerPartitioner(fs, &f.cfg.Partitioner, "the platform's partitioner of interactions, which every producer must use: "+partitioners+"; an interaction on another partition than its key maps to is dead-lettered (wrong-partition)")
	registerShadow(fs, &f.cfg.Shadow, "run as the shadow run NAME of the group: same inputs, its own group, state and output topics (shadow-NAME-inbox...), for 'sponsor diff'")
	fs.StringVar(&f.httpAddr, "http", defaultHTTP, "address of the "+httpEndpoints+" endpoints (empty: off; 127.0.0.1:0 picks a free port)")
	fs.StringVar(&f.logFormat, "log-format", "text", "log format: text or json")
	fs.StringVar(&f.logLevel, "log-level", "info", "log level: debug, info, warn, error")
	fs.IntVar(&f.userCap, "user-cap", 0, "at most this many sponsored messages per user across businesses in any 24 hours (0: off)")
	fs.DurationVar(&f.gap, "conversation-gap", 0, "no sponsored message within this long after the user's last message to the business, e.g. 24h (0: off)")
	registerRetention(fs, &f.retention, "forget a contact after this long without interaction")
	registerGrace(fs, &f.grace, "allowed lateness of interactions: fire a campaign only once the partition's stream time has passed send_at plus this, so interactions up to this late count exactly as of their event time (delays every delivery by as much; 0: fire at send_at)")
	fs.DurationVar(&f.cfg.MaxClockSkew, "max-clock-skew", pipeline.DefaultMaxClockSkew, "dead-letter an interaction whose occurred_at is further ahead than this of its record's timestamp or of the wall clock (a wrong client clock); negative: off")
	fs.BoolVar(&f.decisions, "decisions", true, "write every (campaign, user) decision, delivered or suppressed and why, to the decisions topic (one record per fan-out chunk) (the audit trail of 'sponsor report' and 'sponsor explain')")
	fs.DurationVar(&f.cfg.DecisionsRetention, "decisions-retention", topics.DecisionsRetention, "retention of the decisions topic when the pipeline creates it (retention.ms), independent of the inbox's; negative: for ever (an existing topic is not altered)")
	fs.StringVar(&f.cfg.Compression, "compression", pipeline.DefaultCompression, "codec of the record batches the pipeline writes (inbox, changelog, decisions, dead letters): zstd, lz4, snappy or none; zstd stores a delivery in about 60% of Snappy's bytes for 0.5-1 us more CPU per delivery of a fan-out")
	fs.IntVar(&f.cfg.FanoutChunk, "fanout-chunk", 5000, "most (campaign, user) decisions per task per transaction, and per decisions record")
	fs.IntVar(&f.cfg.MaxPollRecords, "max-poll-records", 5000, "most interactions per transaction")
	fs.DurationVar(&f.cfg.SessionTimeout, "session-timeout", 10*time.Second, "group session timeout: how fast a crashed instance's partitions move, and how long a stopped static member may take to come back without a rebalance; at least the brokers' group.min.session.timeout.ms (6s by default), checked at start")
	fs.DurationVar(&f.cfg.HeartbeatInterval, "heartbeat-interval", 0, "how often to heartbeat to the group coordinator, at most a third of --session-timeout (0: the smaller of a third and 3s)")
	fs.BoolVar(&f.cfg.UnsafeNoTransactions, "unsafe-no-transactions", false, "TESTS ONLY: turn exactly-once off (no transactions, no changelog), so crash tests can prove they detect duplicates and losses")
	fs.DurationVar(&f.cfg.TransactionTimeout, "transaction-timeout", 20*time.Second, "broker-side timeout of an open transaction")
	f.registerSecurity(fs)
	registerConfigFlag(fs)
}

func (f *pipelineFlags) finish() (*slog.Logger, error) {
	var level slog.Level
	if err := level.UnmarshalText([]byte(f.logLevel)); err != nil {
		return nil, fmt.Errorf("--log-level: %w", err)
	}
	hopts := &slog.HandlerOptions{Level: level}
	var h slog.Handler
	switch f.logFormat {
	case "text":
		h = slog.NewTextHandler(os.Stderr, hopts)
	case "json":
		h = slog.NewJSONHandler(os.Stderr, hopts)
	default:
		return nil, fmt.Errorf("--log-format: want text or json, got %q", f.logFormat)
	}
	log := slog.New(h)
	f.cfg.Logger = log
	f.cfg.Policy = policy.Config{ContactRetention: f.retention, UserCap: f.userCap, ConversationGap: f.gap, Grace: f.grace}
	f.cfg.NoDecisions = !f.decisions
	if !f.static {
		f.cfg.DynamicMembership = true
	}
	if f.brokers != "" {
		f.cfg.Brokers = strings.Split(f.brokers, ",")
	}
	return log, nil
}
