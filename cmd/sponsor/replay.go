package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"maps"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sponsored/sponsor/ops/audit"
	"github.com/sponsored/sponsor/ops/replay"
	"github.com/sponsored/sponsor/topics"
)

const replayUsage = `Usage: sponsor replay --brokers HOST:PORT[,...] (--to-start | --to-time TIME | --by DURATION)
                     [--group G] [--shadow NAME] [--topic-prefix P] [--yes]

Moves a consumer group's offsets on interactions back: to the start, to the
first record written at or after TIME (RFC 3339), or back by DURATION (e.g.
6h). It prints the plan (per partition: committed offset, target, end,
records to read again) and changes nothing unless --yes is given. It refuses
--yes while instances of the group run: stop them first (SIGTERM).

Exit status: 0 the plan was printed (whether instances run or not) or
applied; 1 an error, or --yes refused.

On the pipeline's own group a replay re-reads and never re-decides: each
transaction commits the offsets with the state, so on restart a task skips
what its state already reflects, and every campaign it fired stays fired.
Nothing is sent twice.

With --shadow NAME it moves the offsets of the shadow run NAME instead (group
G-shadow-NAME): run 'sponsor run --shadow NAME --state-dir NEW_DIR' with
other rules or another version, and it decides again from there into its own
topics (shadow-NAME-inbox, -decisions, -deadletter), which no consumer of the
real pipeline reads; then 'sponsor diff --shadow NAME' compares.

Flags (also SPONSOR_<NAME> in the environment):
`

func cmdReplay(ctx context.Context, args []string, std stdio) error {
	fs := flag.NewFlagSet("sponsor replay", flag.ContinueOnError)
	fs.SetOutput(std.err)
	var (
		c             clientFlags
		group, shadow string
		toStart, yes  bool
		toTime        string
		by            time.Duration
	)
	c.register(fs)
	fs.StringVar(&group, "group", "sponsor", "the pipeline's consumer group")
	fs.StringVar(&shadow, "shadow", "", "replay the shadow run NAME of the group instead of the group itself")
	fs.BoolVar(&toStart, "to-start", false, "move to the start of each partition")
	fs.StringVar(&toTime, "to-time", "", "move to the first record written at or after this RFC 3339 time")
	fs.DurationVar(&by, "by", 0, "move back by this long (the records written in the last DURATION are read again)")
	fs.BoolVar(&yes, "yes", false, "apply the plan (without it, only print it)")
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), replayUsage)
		fs.PrintDefaults()
	}
	if _, err := parseArgs(fs, args); err != nil {
		return err
	}
	var target replay.Target
	n := 0
	if toStart {
		target.Start, n = true, n+1
	}
	if toTime != "" {
		t, err := time.Parse(time.RFC3339Nano, toTime)
		if err != nil {
			return fmt.Errorf("--to-time: want an RFC 3339 time (2025-06-01T12:00:00Z), got %q", toTime)
		}
		target.Time, n = t, n+1
	}
	if by != 0 {
		if by < 0 {
			return errors.New("--by: must be positive")
		}
		target.Time, n = time.Now().Add(-by), n+1
	}
	if n != 1 {
		return errors.New("give exactly one of --to-start, --to-time and --by")
	}
	opts, err := c.clientOpts()
	if err != nil {
		return err
	}
	run := topics.Run{Prefix: c.prefix, Group: group, Shadow: shadow}
	if err := run.Validate(); err != nil {
		return fmt.Errorf("--shadow: %w", err)
	}
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		return fmt.Errorf("kafka client: %w", err)
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	plan, err := replay.MakePlan(ctx, adm, run.ConsumerGroup(), run.Names().Interactions, target)
	if err != nil {
		return securityHint(err)
	}
	fmt.Fprintf(std.out, "replay of group %s on %s to %s\n", plan.Group, plan.Topic, plan.Target)
	tw := tabwriter.NewWriter(std.out, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintf(tw, "partition\tcommitted\ttarget\tend\tread again\t\n")
	for _, pp := range plan.Partitions {
		committed := fmt.Sprint(pp.Committed)
		if pp.Committed < 0 {
			committed = "none"
		}
		fmt.Fprintf(tw, "%d\t%s\t%d\t%d\t%d\t\n", pp.Partition, committed, pp.Target, pp.End, pp.Reread())
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintf(std.out, "records to read again: %d\n", plan.Reread())
	if shadow == "" {
		fmt.Fprintln(std.out, "The pipeline's state is at the committed offsets: its tasks skip what they already applied, and decide and send nothing again. To decide again with other rules, replay into a shadow run (--shadow NAME).")
	} else {
		fmt.Fprintf(std.out, "Then run: sponsor run --shadow %s --group %s --state-dir NEW_DIR ...; and compare: sponsor diff --shadow %s --group %s\n", shadow, group, shadow, group)
	}
	if plan.Running() {
		fmt.Fprintf(std.out, "Group %s has %d member(s) running: %s\n", plan.Group, len(plan.Members), strings.Join(plan.Members, ", "))
		if !yes {
			// The plan is what was asked for: not an error.
			fmt.Fprintln(std.out, "Nothing changed: --yes is refused until every instance of the group is stopped (SIGTERM).")
			return nil
		}
		return fmt.Errorf("%w: stop every instance (SIGTERM) first; nothing changed", replay.ErrRunning)
	}
	if !yes {
		fmt.Fprintln(std.out, "Nothing changed: run again with --yes to apply.")
		return nil
	}
	if err := replay.Apply(ctx, adm, plan); err != nil {
		return err
	}
	fmt.Fprintf(std.out, "Applied: group %s's offsets moved.\n", plan.Group)
	return nil
}

const diffUsage = `Usage: sponsor diff --shadow NAME --brokers HOST:PORT[,...] --registry URL [--group G] [--campaign C] [--topic-prefix P] [-n N]

Compares the real inbox with the inbox of the shadow run NAME ('sponsor run
--shadow NAME'): deliveries in both, only in the real one, only in the
shadow; and, when both runs wrote decisions, the (campaign, user) pairs
whose outcome changed, counted by change (e.g. BLOCKED->DELIVERED). Both
are read whole, read_committed. It first shows the lag on interactions of
each run's group: a run that has not processed every interaction yet makes
the comparison partial. Exit 0 when the runs agree, 1 when they differ, 3
when the comparison is partial (a run has lag; run it again later).

Flags (also SPONSOR_<NAME> in the environment):
`

func cmdDiff(ctx context.Context, args []string, std stdio) error {
	fs := flag.NewFlagSet("sponsor diff", flag.ContinueOnError)
	fs.SetOutput(std.err)
	var (
		c                       clientFlags
		group, shadow, campaign string
		limit                   int
	)
	c.register(fs)
	fs.StringVar(&group, "group", "sponsor", "the pipeline's consumer group")
	fs.StringVar(&shadow, "shadow", "", "the shadow run to compare with (required)")
	fs.StringVar(&campaign, "campaign", "", "compare only this campaign")
	fs.IntVar(&limit, "n", 10, "list at most N differences of each kind")
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), diffUsage)
		fs.PrintDefaults()
	}
	if _, err := parseArgs(fs, args); err != nil {
		return err
	}
	if !topics.ValidShadowName(shadow) {
		return errors.New("--shadow NAME is required (letters, digits, '.', '_', '-')")
	}
	cfg, err := c.auditConfig()
	if err != nil {
		return err
	}
	// Both runs must have processed every interaction, or the comparison
	// shows a catch-up, not the change under test.
	behind := map[string]int64{}
	live, shadowRun := topics.Run{Prefix: c.prefix, Group: group}, topics.Run{Prefix: c.prefix, Group: group, Shadow: shadow}
	for _, g := range []string{live.ConsumerGroup(), shadowRun.ConsumerGroup()} {
		lag, err := audit.GroupLag(ctx, cfg, g)
		if err != nil {
			return securityHint(err)
		}
		var total int64
		var parts []string
		for _, p := range slices.Sorted(maps.Keys(lag)) {
			if lag[p] > 0 {
				total += lag[p]
				parts = append(parts, fmt.Sprintf("%d:%d", p, lag[p]))
			}
		}
		if total > 0 {
			behind[g] = total
			fmt.Fprintf(std.out, "group %s has not caught up: %d offsets of interactions not processed yet (partition:lag %s)\n", g, total, strings.Join(parts, " "))
		}
	}
	rep, err := audit.Diff(ctx, cfg, shadowRun.Names(), campaign)
	if err != nil {
		return securityHint(err)
	}
	if len(behind) > 0 {
		fmt.Fprintln(std.out, "PARTIAL: a run is still catching up; the differences below may only be what it has not decided yet")
	}
	fmt.Fprintf(std.out, "real inbox %d records, shadow %s inbox %d records: %d deliveries in both, %d only in the real inbox, %d only in the shadow\n",
		rep.RealInbox, shadow, rep.ShadowInbox, rep.Both, len(rep.OnlyReal), len(rep.OnlyShadow))
	list := func(what string, ds []audit.Difference) {
		for i, d := range ds {
			if i == limit {
				fmt.Fprintf(std.out, "  ... %d more\n", len(ds)-limit)
				break
			}
			fmt.Fprintf(std.out, "  %s %s -> %s\n", what, d.Campaign, d.User)
		}
	}
	list("only real:  ", rep.OnlyReal)
	list("only shadow:", rep.OnlyShadow)
	if rep.Decisions {
		fmt.Fprintf(std.out, "decisions that changed (real->shadow): %d kinds\n", len(rep.Changed))
		for kind, k := range rep.Changed {
			fmt.Fprintf(std.out, "  %-40s %d\n", kind, k)
		}
		for _, d := range rep.ChangedExamples {
			fmt.Fprintf(std.out, "  e.g. %s -> %s: %s -> %s\n", d.Campaign, d.User, d.Real, d.Shadow)
		}
	} else {
		fmt.Fprintln(std.out, "decisions not compared: a run wrote none (--decisions=false?)")
	}
	if len(behind) > 0 {
		return &exitError{code: 3, err: errors.New("partial comparison: wait until both runs have no lag (sponsor_lag_records 0) and run diff again")}
	}
	if !rep.Same() {
		return errors.New("the runs differ")
	}
	fmt.Fprintln(std.out, "the runs agree")
	return nil
}
