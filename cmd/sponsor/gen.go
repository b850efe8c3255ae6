package main

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/sponsored/sponsor/loadgen"
)

const genUsage = `Usage: sponsor gen --brokers HOST:PORT[,...] --registry URL [--count N | --rate R [--duration D]] [flags]

Writes a synthetic workload (package loadgen: users with a few
businesses each, a long tail of business popularity, a mix of interaction
kinds, campaigns with audiences) to the interactions and campaigns topics:
interactions with event time = now, and every --campaign-every a campaign
launch whose send_at is 3 seconds ahead. The same --seed gives the same
sequence of users, businesses and kinds.

It stops after --count interactions, after --duration, or on Ctrl-C; with
no --rate it writes as fast as the brokers take. Progress goes to stderr: a
live line with rate and ETA on a terminal, log lines otherwise.

Flags (also SPONSOR_<NAME> in the environment):
`

func cmdGen(ctx context.Context, fs *flagSet, std stdio) error {
	var (
		c    clientFlags
		cfg  loadgen.GenConfig
		wl   loadgen.Workload
		part string
	)
	c.register(fs.FlagSet)
	registerPartitioner(fs.FlagSet, &part, toolPartitionerDoc)
	fs.Int64Var(&cfg.Count, "count", 0, "interactions to write (0: no limit)")
	fs.Float64Var(&cfg.Rate, "rate", 0, "interactions per second (0: as fast as the brokers take)")
	fs.DurationVar(&cfg.Duration, "duration", 0, "stop after this long (0: no limit)")
	fs.DurationVar(&cfg.CampaignEvery, "campaign-every", 5*time.Second, "launch a campaign this often, the first after half of it (0: none)")
	fs.IntVar(&wl.Users, "users", 10000, "distinct users")
	fs.IntVar(&wl.Businesses, "businesses", 200, "distinct businesses")
	fs.Uint64Var(&wl.Seed, "seed", 1, "seed of the generator")
	if _, err := fs.parse(); err != nil {
		return err
	}
	t, err := c.target()
	if err != nil {
		return err
	}
	if t.Partitioner, err = partitioner(part); err != nil {
		return err
	}
	if cfg.Count == 0 && cfg.Rate == 0 {
		return errors.New("give --count N, or --rate R (with --duration D, or until Ctrl-C)")
	}
	if wl.Users < 1 || wl.Businesses < 1 {
		return errors.New("--users must be at least 1 and --businesses at least 1")
	}
	cfg.Workload = wl
	progress := newProgress(std.err, isTerminal(std.err))
	cfg.Progress = progress.report
	if !progress.tty {
		cfg.ProgressEvery = 5 * time.Second
	}
	p, err := loadgen.Gen(ctx, t, cfg)
	if err != nil {
		return securityHint(err)
	}
	fmt.Fprintf(std.out, "wrote %d interactions to %s and %d campaigns to %s in %s (%.0f/s)\n",
		p.Interactions, t.Topics.Interactions, p.Campaigns, t.Topics.Campaigns, p.Elapsed.Round(time.Millisecond), p.Rate)
	return nil
}
