// Command sponsor runs the sponsored-messages pipeline.
//
//	sponsor run --brokers HOST:PORT[,...] --registry URL --state-dir DIR [--group NAME] [--http ADDR]
//	sponsor dev [--demo | --no-pipeline] [--data DIR]
//	sponsor produce interactions|campaigns --brokers ... --registry URL [FILE|-]
//	sponsor gen --brokers ... --registry URL --count N | --rate R [--duration D]
//	sponsor schemas check FILE.avsc [--against interactions|campaigns]
//	sponsor tail inbox|deadletter|interactions|campaigns|decisions... --brokers ... --registry URL
//	sponsor deadletter redrive --brokers ... [--source S] [--reason R] [--since T] [--yes]
//	sponsor state get --user U [--business B] (--state-dir DIR | --from http://HOST:PORT)
//	sponsor state rebuild --brokers ... --state-dir DIR [--group G] [--partitions 0,1,...]
//	sponsor report --campaign C --brokers ... --registry URL [--inbox]
//	sponsor explain --campaign C --user U --brokers ... --registry URL
//	sponsor replay --brokers ... (--to-start | --to-time T | --by D) [--shadow NAME] [--yes]
//	sponsor diff --shadow NAME --brokers ... --registry URL
//	sponsor txn list --brokers ... | sponsor txn abort --brokers ... --topic T --partition P [--yes]
//
// Every flag can also be set as SPONSOR_<FLAG> in the environment (dashes
// become underscores: --state-dir is SPONSOR_STATE_DIR), and those of run
// and dev in a YAML file named by --config or SPONSOR_CONFIG (keys are the
// flag names). A flag on the command line wins, then the environment, then
// the file.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/sponsored/sponsor/pipeline"
	"github.com/sponsored/sponsor/policy"
	"github.com/sponsored/sponsor/topics"
)

const usage = `sponsor: the sponsored-messages stream processor.

It reads the interactions and campaigns topics, keeps per-user state in
Pebble, and writes each deliverable sponsored message to the inbox topic
exactly once, under the platform's rules (contact first, at most one message
per business per 24 hours, the advertiser's audience, never to people who
blocked or opted out).

Usage:
  sponsor run  --brokers HOST:PORT[,...] --registry URL --state-dir DIR [flags]
               run the pipeline against an existing Kafka cluster, as a
               static group member: SIGTERM stops it for a restart (it stays
               in the group, a quick restart does not rebalance); SIGUSR1
               stops it and leaves the group (scaling in: the others take its
               partitions at once)
  sponsor dev  [--demo | --no-pipeline] [--data DIR] [flags]
               start an in-process Kafka and schema registry, the topics and
               the pipeline; --demo also feeds a synthetic workload and prints
               live counters and a few delivered messages; --no-pipeline
               starts no pipeline (run 'sponsor run' against it yourself)

Tools (every tool takes --brokers, --registry and the security flags of run:
--tls*, --sasl-*, --registry-user, --registry-token..., as flags or SPONSOR_*):
  sponsor produce interactions|campaigns [FILE|-]
               write JSON lines as records, all or nothing, in one transaction
  sponsor gen  --count N | --rate R [--duration D]
               write a synthetic workload, with progress and ETA
  sponsor schemas check FILE.avsc [--against interactions|campaigns]
               tell whether a new input schema version is compatible
  sponsor tail inbox|deadletter|interactions|campaigns|decisions...
               print decoded records as JSON lines, read_committed
  sponsor deadletter redrive [--source interactions|campaigns] [--reason SUBSTRING]
               [--since TIME|DURATION] [--group NAME] [--yes]
               send dead letters back to their source topic once the cause
               is fixed, each at most once; without --yes only the plan
  sponsor report --campaign C [--inbox]
               a campaign's decisions: delivered and suppressed by reason,
               per partition and in all, from the decisions topic
  sponsor explain --campaign C --user U
               whether U got C and which rule decided, from the decisions
               topic, the inbox and the campaigns topic
  sponsor replay (--to-start | --to-time T | --by D) [--shadow NAME] [--yes]
               move the group's offsets back, after showing the plan; with
               --shadow, for a shadow run that decides again into its own
               topics (sponsor run --shadow NAME)
  sponsor diff --shadow NAME
               compare the shadow run's inbox and decisions with the real ones
  sponsor txn list
               the transactions open on the pipeline's topics: producer,
               transactional id, start offset, how long open, whether it
               holds a partition's last stable offset (and every
               read_committed reader with it)
  sponsor txn abort --topic T --partition P [--producer-id ID] [--yes]
               abort the transaction holding a partition, as
               kafka-transactions.sh abort does; without --yes only the plan
  sponsor config print [run flags]
               show the effective configuration of 'sponsor run' (flags,
               SPONSOR_* environment, --config file, defaults), secrets
               redacted

State (for SREs):
  sponsor state get --user U [--business B] (--state-dir DIR | --from http://HOST:PORT)
               print as JSON what the state knows about a user: contacts,
               blocks and opt-outs, deliveries; from a stopped instance's
               folder, or from a running one through its --http address
  sponsor state rebuild --brokers ... --state-dir DIR [--group G] [--partitions 0,1,...]
               rebuild a state folder from the group's changelog topic

Run 'sponsor COMMAND --help' for the flags. Every flag
can also be set in the environment as SPONSOR_<NAME> (--state-dir is
SPONSOR_STATE_DIR). run, dev and config print also read a YAML file given
as --config FILE (or SPONSOR_CONFIG), whose keys are the flag names
(state-dir: /var/lib/sponsor); unknown keys and values of the wrong type
are errors. The command line wins, then the environment, then the file.
`

func main() {
	if len(os.Args) < 2 {
		fmt.Fprint(os.Stderr, usage)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	var err error
	switch os.Args[1] {
	case "run":
		err = cmdRun(ctx, os.Args[2:])
	case "dev":
		err = cmdDev(ctx, os.Args[2:])
	case "produce":
		err = cmdProduce(ctx, os.Args[2:], osStdio())
	case "gen":
		err = cmdGen(ctx, os.Args[2:], osStdio())
	case "schemas":
		err = cmdSchemas(ctx, os.Args[2:], osStdio())
	case "tail":
		err = cmdTail(ctx, os.Args[2:], osStdio())
	case "deadletter":
		err = cmdDeadletter(ctx, os.Args[2:], osStdio())
	case "config":
		err = cmdConfig(os.Args[2:], os.Stdout)
	case "state":
		err = cmdState(ctx, os.Args[2:], osStdio())
	case "report":
		err = cmdReport(ctx, os.Args[2:], osStdio())
	case "explain":
		err = cmdExplain(ctx, os.Args[2:], osStdio())
	case "replay":
		err = cmdReplay(ctx, os.Args[2:], osStdio())
	case "diff":
		err = cmdDiff(ctx, os.Args[2:], osStdio())
	case "txn":
		err = cmdTxn(ctx, os.Args[2:], osStdio())
	case "-h", "--help", "help":
		fmt.Print(usage)
		return
	default:
		fmt.Fprintf(os.Stderr, "sponsor: unknown command %q\n\n%s", os.Args[1], usage)
		os.Exit(2)
	}
	if err != nil && !errors.Is(err, flag.ErrHelp) {
		fmt.Fprintf(os.Stderr, "sponsor %s: %v\n", os.Args[1], err)
		code := 1
		if ee, ok := errors.AsType[*exitError](err); ok {
			code = ee.code
		}
		os.Exit(code)
	}
}

// exitError is an error with an exit status other than 1, for a command
// whose status tells a script more than success or failure (explain).
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }
func (e *exitError) Unwrap() error { return e.err }

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
	fs.StringVar(&f.cfg.Group, "group", "sponsor", "consumer group; instances with the same group share the partitions")
	fs.StringVar(&f.cfg.InstanceID, "instance-id", "", "stable instance identity (default: kept in the state folder)")
	fs.BoolVar(&f.static, "static", true, "join as a static group member with the instance id (the default): a restart within the session timeout does not rebalance, and SIGTERM does not leave the group; --static=false is --dynamic")
	fs.BoolVar(&f.cfg.DynamicMembership, "dynamic", false, "join as a dynamic group member (no instance id in the group): SIGTERM leaves the group and a restart rebalances")
	fs.BoolVar(&f.cfg.LeaveGroupOnShutdown, "leave-group-on-shutdown", false, "a static member leaves the group on SIGTERM, so its partitions move at once (scaling in); without it only SIGUSR1 does")
	fs.StringVar(&f.cfg.TopicPrefix, "topic-prefix", "", "prefix of every topic name")
	fs.StringVar(&f.cfg.Partitioner, "partitioner", string(topics.DefaultPartitioner), "the platform's partitioner of interactions, which every producer must use: "+partitioners+"; an interaction on another partition than its key maps to is dead-lettered (wrong-partition)")
	fs.StringVar(&f.cfg.Shadow, "shadow", "", "run as the shadow run NAME of the group: same inputs, its own group, state and output topics (shadow-NAME-inbox...), for 'sponsor diff'")
	fs.StringVar(&f.httpAddr, "http", defaultHTTP, "address of the "+httpEndpoints+" endpoints (empty: off; 127.0.0.1:0 picks a free port)")
	fs.StringVar(&f.logFormat, "log-format", "text", "log format: text or json")
	fs.StringVar(&f.logLevel, "log-level", "info", "log level: debug, info, warn, error")
	fs.IntVar(&f.userCap, "user-cap", 0, "at most this many sponsored messages per user across businesses in any 24 hours (0: off)")
	fs.DurationVar(&f.gap, "conversation-gap", 0, "no sponsored message within this long after the user's last message to the business, e.g. 24h (0: off)")
	fs.DurationVar(&f.retention, "contact-retention", 365*24*time.Hour, "forget a contact after this long without interaction")
	fs.DurationVar(&f.grace, "grace", 0, "allowed lateness of interactions: fire a campaign only once the partition's stream time has passed send_at plus this, so interactions up to this late count exactly as of their event time (delays every delivery by as much; 0: fire at send_at)")
	fs.DurationVar(&f.cfg.MaxClockSkew, "max-clock-skew", pipeline.DefaultMaxClockSkew, "dead-letter an interaction whose occurred_at is further ahead than this of its record's timestamp or of the wall clock (a wrong client clock); negative: off")
	fs.BoolVar(&f.decisions, "decisions", true, "write every (campaign, user) decision, delivered or suppressed and why, to the decisions topic (the audit trail of 'sponsor report' and 'sponsor explain')")
	fs.IntVar(&f.cfg.FanoutChunk, "fanout-chunk", 5000, "most (campaign, user) decisions per task per transaction")
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

// parse parses args, after taking defaults from the --config file (if fs
// has that flag) and then from SPONSOR_* variables.
func parse(fs *flag.FlagSet, args []string) error {
	if err := applyConfigFile(fs, args); err != nil {
		return err
	}
	var envErr error
	fs.VisitAll(func(fl *flag.Flag) {
		name := envName(fl.Name)
		if v, ok := os.LookupEnv(name); ok {
			if err := fl.Value.Set(v); err != nil && envErr == nil {
				envErr = fmt.Errorf("%s=%q: %w", name, v, err)
			}
		}
	})
	if envErr != nil {
		return envErr
	}
	return fs.Parse(args)
}

// runFlags parses the flags of `sponsor run` (also used by `sponsor config
// print`, so both see exactly the same configuration).
func runFlags(name string, args []string) (*flag.FlagSet, *pipelineFlags, error) {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	f := &pipelineFlags{}
	fs.StringVar(&f.brokers, "brokers", "", "Kafka seed brokers, HOST:PORT[,...] (required)")
	fs.StringVar(&f.cfg.Registry, "registry", "", "schema registry URL (required)")
	fs.StringVar(&f.cfg.StateDir, "state-dir", "", "folder of the local state (required)")
	fs.BoolVar(&f.cfg.CreateTopics, "create-topics", false, "also create the input topics if missing (development)")
	var parts int
	fs.IntVar(&parts, "partitions", 6, "partitions of the topics --create-topics creates")
	f.register(fs, "127.0.0.1:8080")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage: %s --brokers HOST:PORT[,...] --registry URL --state-dir DIR [flags]\n\nFlags (also SPONSOR_<NAME> in the environment):\n", name)
		fs.PrintDefaults()
	}
	if err := parse(fs, args); err != nil {
		return fs, f, err
	}
	f.cfg.Partitions = int32(parts)
	return fs, f, nil
}

func cmdRun(ctx context.Context, args []string) error {
	fs, f, err := runFlags("sponsor run", args)
	if err != nil {
		return err
	}
	log, err := f.finish()
	if err != nil {
		return err
	}
	r, err := pipeline.New(f.cfg)
	if err != nil {
		return flagNames(fs, &f.cfg, err)
	}
	return runWithHTTP(ctx, r, f.httpAddr, log)
}

// httpEndpoints are what --http serves (pipeline.Runner.Handler).
const httpEndpoints = "/metrics, /healthz, /readyz and /state/user"

// runWithHTTP runs r and serves its endpoints on addr. SIGTERM and SIGINT
// (main's ctx) stop r; SIGUSR1 stops it and leaves the group (see
// leaveOnSIGUSR1).
func runWithHTTP(ctx context.Context, r *pipeline.Runner, addr string, log *slog.Logger) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stopLeaving := leaveOnSIGUSR1(r, cancel, log)
	defer stopLeaving()
	if addr != "" {
		reg := prometheus.NewRegistry()
		reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
		if err := r.Register(reg); err != nil {
			return err
		}
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			return fmt.Errorf("--http %s: %w", addr, err)
		}
		srv := &http.Server{Handler: r.Handler(reg), ReadHeaderTimeout: 10 * time.Second}
		go srv.Serve(ln)
		defer srv.Close()
		log.Info("serving "+httpEndpoints, "addr", "http://"+ln.Addr().String())
	}
	return r.Run(ctx)
}

// leaveOnSIGUSR1 makes SIGUSR1 a shutdown that leaves the group: r leaves
// with its instance id once stopped, so the other instances take its
// partitions at once (scaling in), where SIGTERM keeps them for the
// session timeout (a rolling restart: the instance comes back to them
// without a rebalance). It returns the function that stops listening.
func leaveOnSIGUSR1(r *pipeline.Runner, stop context.CancelFunc, log *slog.Logger) func() {
	ch := make(chan os.Signal, 1)
	signal.Notify(ch, syscall.SIGUSR1)
	done := make(chan struct{})
	go func() {
		select {
		case <-ch:
			log.Info("SIGUSR1: stopping and leaving the group, so the other instances take the partitions now")
			r.LeaveGroupOnShutdown()
			stop()
		case <-done:
		}
	}()
	return func() { signal.Stop(ch); close(done) }
}
