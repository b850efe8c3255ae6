package main

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/sponsored/sponsor/ops/replay"
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

func cmdReplay(ctx context.Context, fs *flagSet, std stdio) error {
	var (
		c            clientFlags
		toStart, yes bool
		toTime       string
		by           time.Duration
	)
	c.register(fs.FlagSet)
	c.registerRun(fs.FlagSet, "the pipeline's consumer group", "replay the shadow run NAME of the group instead of the group itself")
	fs.BoolVar(&toStart, "to-start", false, "move to the start of each partition")
	fs.StringVar(&toTime, "to-time", "", "move to the first record written at or after this RFC 3339 time")
	fs.DurationVar(&by, "by", 0, "move back by this long (the records written in the last DURATION are read again)")
	fs.BoolVar(&yes, "yes", false, "apply the plan (without it, only print it)")
	if _, err := fs.parse(); err != nil {
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
	run, err := c.run()
	if err != nil {
		return err
	}
	adm, err := newAdmin(opts)
	if err != nil {
		return err
	}
	defer adm.Close()
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
	if shadow, group := c.shadow, c.group; shadow == "" {
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
