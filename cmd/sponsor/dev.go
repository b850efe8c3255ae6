package main

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sr"

	"github.com/sponsored/sponsor/deploy/embedded"
	"github.com/sponsored/sponsor/loadgen"
	"github.com/sponsored/sponsor/pipeline"
	"github.com/sponsored/sponsor/policy"
	"github.com/sponsored/sponsor/schemas/wire"
	"github.com/sponsored/sponsor/topics"
)

const devUsage = `Usage: sponsor dev [--demo | --no-pipeline] [--data DIR] [flags]

Starts an in-process Kafka and schema registry on fixed local ports, creates the
topics and runs the pipeline against them (with --no-pipeline, not: the
pipeline is then yours to start with 'sponsor run' and stop).

Flags (also SPONSOR_<NAME> in the environment):
`

func cmdDev(ctx context.Context, fs *flagSet, _ stdio) error {
	var f pipelineFlags
	var (
		dataDir       string
		kafkaPort     int
		registryPort  int
		parts         int
		demo          bool
		noPipeline    bool
		rate          float64
		campaignEvery time.Duration
	)
	fs.StringVar(&dataDir, "data", "", "folder that keeps the embedded Kafka's log, the schemas and the pipeline state across restarts (empty: a temporary folder, removed on exit)")
	fs.IntVar(&kafkaPort, "kafka-port", 29092, "port of the embedded Kafka on 127.0.0.1")
	fs.IntVar(&registryPort, "registry-port", 28081, "port of the embedded schema registry on 127.0.0.1")
	fs.IntVar(&parts, "partitions", 6, "partitions of the topics")
	fs.BoolVar(&demo, "demo", false, "feed a synthetic workload and print live counters and delivered messages")
	fs.BoolVar(&noPipeline, "no-pipeline", false, "run only the embedded Kafka and schema registry, with the topics and schemas, and no pipeline: run 'sponsor run' against them yourself, to rehearse a replay, a redrive or a rebuild as in production")
	fs.Float64Var(&rate, "rate", 200, "demo interactions per second")
	fs.DurationVar(&campaignEvery, "campaign-every", 5*time.Second, "demo: launch a campaign this often")
	f.register(fs.FlagSet, "127.0.0.1:8080")
	if _, err := fs.parse(); err != nil {
		return err
	}
	log, err := f.finish()
	if err != nil {
		return err
	}
	if demo && noPipeline {
		return errors.New("--demo needs the pipeline: give one of --demo and --no-pipeline")
	}
	if dataDir == "" {
		dataDir, err = os.MkdirTemp("", "sponsor-dev-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(dataDir)
	}
	stack, err := embedded.Start(embedded.Options{Dir: dataDir, KafkaPort: kafkaPort, RegistryPort: registryPort})
	if err != nil {
		return err
	}
	defer stack.Close()

	f.cfg.Brokers = stack.Brokers
	f.cfg.Registry = stack.RegistryURL
	f.cfg.StateDir = devStateDir(dataDir)
	f.cfg.CreateTopics = true
	f.cfg.Partitions = int32(parts)
	if noPipeline {
		return devWithoutPipeline(ctx, stack, &f, dataDir)
	}
	r, err := pipeline.New(f.cfg)
	if err != nil {
		return flagNames(fs.FlagSet, &f.cfg, err)
	}
	names := r.Names()
	fmt.Printf(`
  sponsor dev: embedded Kafka and schema registry
    kafka     %s
    registry  %s
    data      %s (state: %s)
    topics    %s
    http      %s on %s

  Watch the inbox:  kcat -b %s -C -t %s -X isolation.level=read_committed -f '%%k %%h\n'
                    (keys and headers only: Debian's kcat has no Avro; decoded: sponsor tail inbox --follow)

`, strings.Join(stack.Brokers, ","), stack.RegistryURL, dataDir, f.cfg.StateDir,
		strings.Join(slices.DeleteFunc([]string{names.Interactions, names.Campaigns, names.Inbox, names.DeadLetter, names.Decisions, names.Changelog}, func(n string) bool { return n == "" }), " "),
		httpEndpoints, cmp.Or(f.httpAddr, "(off)"),
		stack.Brokers[0], names.Inbox)

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	var runErr error
	wg.Go(func() {
		runErr = runWithHTTP(ctx, r, f.httpAddr, log)
		cancel()
	})
	wg.Go(func() {
		// Keep the registered schemas on disk as soon as they exist, so the
		// log still decodes after a kill.
		for !r.Ready() {
			select {
			case <-ctx.Done():
				return
			case <-time.After(200 * time.Millisecond):
			}
		}
		if err := stack.SaveSchemas(ctx); err != nil {
			log.Warn("save schemas", "err", err)
		}
	})
	if demo {
		wg.Go(func() {
			if err := runDemo(ctx, r, stack, names.Interactions, names.Campaigns, names.Inbox, topics.Partitioner(f.cfg.Partitioner), rate, campaignEvery, log); err != nil {
				log.Error("demo stopped", "err", err)
			}
		})
	}
	wg.Wait()
	if errors.Is(runErr, context.Canceled) {
		runErr = nil
	}
	return runErr
}

// devWithoutPipeline creates the topics and registers the schemas on the
// embedded stack, prints how to run the pipeline against it, and waits for
// the end: the stack of `sponsor dev --no-pipeline`.
func devWithoutPipeline(ctx context.Context, stack *embedded.Stack, f *pipelineFlags, dataDir string) error {
	cfg := f.cfg
	cfg.EnsureDefaults()
	names := cfg.Run().Names()
	if cfg.NoDecisions {
		names.Decisions = ""
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(stack.Brokers...))
	if err != nil {
		return err
	}
	defer cl.Close()
	cat := topics.Catalog{Names: names, Partitions: cfg.Partitions, ReplicationFactor: -1, DecisionsRetention: cfg.DecisionsRetention}
	if _, err := cat.Ensure(ctx, kadm.NewClient(cl), true); err != nil {
		return fmt.Errorf("create the topics: %w", err)
	}
	rc, err := sr.NewClient(sr.URLs(stack.RegistryURL))
	if err != nil {
		return err
	}
	if _, err := wire.New(ctx, rc, wire.Topics{Interactions: names.Interactions, Campaigns: names.Campaigns, Inbox: names.Inbox, Decisions: names.Decisions}); err != nil {
		return fmt.Errorf("register the schemas: %w", err)
	}
	if err := stack.SaveSchemas(ctx); err != nil {
		return err
	}
	brokers := strings.Join(stack.Brokers, ",")
	fmt.Printf(`
  sponsor dev --no-pipeline: embedded Kafka and schema registry, no pipeline
    kafka     %s
    registry  %s
    data      %s
    topics    %s

  Run the pipeline (stop it with Ctrl-C or SIGTERM, start it again, replay in between):
    sponsor run --brokers %s --registry %s --state-dir %s --group %s

`, brokers, stack.RegistryURL, dataDir,
		strings.Join(slices.DeleteFunc([]string{names.Interactions, names.Campaigns, names.Inbox, names.DeadLetter, names.Decisions, names.Changelog}, func(n string) bool { return n == "" }), " "),
		brokers, stack.RegistryURL, cfg.StateDir, cfg.Group)
	<-ctx.Done()
	return nil
}

// runDemo waits for the pipeline, feeds the workload, and prints a line of
// counters each second and the first few delivered messages.
func runDemo(ctx context.Context, r *pipeline.Runner, stack *embedded.Stack, interactions, campaigns, inbox string, part topics.Partitioner, rate float64, every time.Duration, log *slog.Logger) error {
	rc, err := sr.NewClient(sr.URLs(stack.RegistryURL))
	if err != nil {
		return err
	}
	var serde *wire.Serde
	for serde == nil {
		// The pipeline creates the topics and registers the schemas first.
		if r.Ready() {
			serde, err = wire.New(ctx, rc, wire.Topics{Interactions: interactions, Campaigns: campaigns, Inbox: inbox})
			if err != nil {
				return err
			}
			break
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(200 * time.Millisecond):
		}
	}
	// The demo is a producer like any other: it places its records with
	// the pipeline's partitioner.
	prod, err := kgo.NewClient(kgo.SeedBrokers(stack.Brokers...), kgo.RecordPartitioner(part.ProducerPartitioner()))
	if err != nil {
		return err
	}
	defer prod.Close()
	tail, err := kgo.NewClient(kgo.SeedBrokers(stack.Brokers...), kgo.ConsumeTopics(inbox),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()), kgo.ConsumeResetOffset(kgo.NewOffset().AtEnd()))
	if err != nil {
		return err
	}
	defer tail.Close()

	var wg sync.WaitGroup
	defer wg.Wait()
	wg.Go(func() {
		g := loadgen.NewGenerator(loadgen.Workload{Seed: uint64(time.Now().UnixNano()), Users: 2000, Businesses: 50})
		if err := loadgen.Feed(ctx, prod, serde, interactions, campaigns, g, rate, every); err != nil {
			log.Error("demo workload", "err", err)
		}
	})
	wg.Go(func() {
		shown := 0
		for ctx.Err() == nil {
			fs := tail.PollFetches(ctx)
			fs.EachRecord(func(rec *kgo.Record) {
				if shown >= 3 {
					return
				}
				m, err := serde.DecodeInbox(rec.Value)
				if err != nil {
					return
				}
				shown++
				fmt.Printf("  inbox  %s <- %s (campaign %s, sent %s): %q\n", m.UserID, m.BusinessID, m.CampaignID, m.SentAt.Format(time.TimeOnly), m.Message.Text)
			})
			if shown >= 3 {
				shown = 0
				select {
				case <-ctx.Done():
				case <-time.After(10 * time.Second):
				}
			}
		}
	})
	t := time.NewTicker(time.Second)
	defer t.Stop()
	st := r.Stats()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		var sup []string
		for _, reason := range policy.Reasons()[1:] {
			if n := st.Decisions[reason].Load(); n > 0 {
				sup = append(sup, fmt.Sprintf("%s=%d", reason, n))
			}
		}
		var fanning string
		for _, f := range st.Fanouts() {
			fanning += fmt.Sprintf("  fanning out %s %d/%d", f.Campaign, f.Visited, f.Contacts)
		}
		fmt.Printf("  interactions %d  campaigns fired %d  delivered %d  suppressed {%s}  dead letters %d%s\n",
			st.Interactions.Load(), st.Campaigns.Load(), st.Delivered(), strings.Join(sup, " "), st.DeadLetters.Load(), fanning)
	}
}
