package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/sponsored/sponsor/ops/redrive"
)

const redriveUsage = `Usage: sponsor deadletter redrive --brokers HOST:PORT[,...] [--registry URL] [--topic-prefix P] [--group NAME]
                   [--shadow NAME] [--source interactions|campaigns] [--reason SUBSTRING]
                   [--since TIME|DURATION] [--partitioner murmur2|crc32] [--yes]

Sends dead letters back to the input topic they came from (their
__connect.errors.topic header), once the producer or the pipeline that
rejected them is fixed: the original key and value bytes, untouched. An
interaction goes to the partition its key maps to under --partitioner (give
the pipeline's), so a wrong-partition dead letter lands where it belongs; a
campaign goes back to its partition (.partition header). A record rejected
again simply comes back to the dead-letter topic.

Without --yes it only shows the plan: per source topic and reason, how many
dead letters it would send, how many were redriven before, a few examples;
it writes nothing. With --yes it sends them, in Kafka transactions that
also commit the dead-letter offsets consumed, under one consumer group per
source topic and reason (<group>-redrive.<topic>.<reason>): running it
twice never sends a dead letter twice, and a run that is killed resumes
where it stopped. --since skips, for good, older dead letters of the
classes it redrives.

With --shadow NAME it redrives the dead letters of the shadow run NAME of
the group ('sponsor run --shadow NAME': its dead-letter topic
shadow-NAME-deadletter, its positions in the groups
<group>-shadow-NAME-redrive.<topic>.<reason>). They go back to the input
topics, which the real pipeline reads too.

Flags (also SPONSOR_<NAME> in the environment):
`

// cmdDeadletter implements `sponsor deadletter redrive`.
func cmdDeadletter(ctx context.Context, fs *flagSet, std stdio) error {
	var (
		c            clientFlags
		source       string
		since        string
		yes, verbose bool
		cfg          redrive.Config
		part         string
	)
	c.register(fs.FlagSet)
	registerPartitioner(fs.FlagSet, &part, toolPartitionerDoc)
	c.registerRun(fs.FlagSet, "consumer group of the pipeline; positions are kept in the groups <group>-redrive.<topic>.<reason>",
		"redrive the dead letters of the shadow run NAME of the group (sponsor run --shadow NAME): its dead-letter topic, positions in the groups <group>-shadow-NAME-redrive.<topic>.<reason>")
	fs.StringVar(&source, "source", "", "redrive only dead letters of this topic: interactions or campaigns (default: both)")
	fs.StringVar(&cfg.Reason, "reason", "", "redrive only dead letters whose reason (sponsor.errors.reason) contains this, e.g. misrouted-key")
	fs.StringVar(&since, "since", "", "redrive only dead letters written at or after this RFC 3339 time, or this long ago (e.g. 2h)")
	fs.IntVar(&cfg.Examples, "examples", 3, "examples shown per source and reason")
	fs.BoolVar(&yes, "yes", false, "send them (without it: show the plan, write nothing)")
	fs.BoolVar(&verbose, "verbose", false, "log each transaction")
	if _, err := fs.parse(); err != nil {
		return err
	}
	run, err := c.run()
	if err != nil {
		return err
	}
	if cfg.Brokers, err = c.brokerList(); err != nil {
		return err
	}
	if cfg.ClientOpts, err = c.kafkaOpts(); err != nil {
		return err
	}
	if cfg.Partitioner, err = partitioner(part); err != nil {
		return err
	}
	cfg.Names = run.Names()
	cfg.Group = run.ConsumerGroup()
	switch source {
	case "":
	case "interactions":
		cfg.Sources = []string{cfg.Names.Interactions}
	case "campaigns":
		cfg.Sources = []string{cfg.Names.Campaigns}
	default:
		return fmt.Errorf("--source: want interactions or campaigns, got %q", source)
	}
	if cfg.Since, err = parseSince(since, time.Now()); err != nil {
		return fmt.Errorf("--since: %w", err)
	}
	if verbose {
		cfg.Logger = slog.New(slog.NewTextHandler(std.err, nil))
	}

	plan, err := redrive.MakePlan(ctx, cfg)
	if err != nil {
		return securityHint(err)
	}
	printPlan(std.out, plan, &cfg)
	total := plan.Total()
	if !yes {
		if total > 0 {
			fmt.Fprintf(std.out, "Nothing was sent. Run again with --yes to send %d dead letter%s back.\n", total, plural(total))
		}
		return nil
	}
	if total == 0 {
		return nil
	}
	prog := newProgress(std.err, isTerminal(std.err))
	cfg.Progress = prog.redrive
	res, err := redrive.Run(ctx, cfg, plan)
	classes := slices.SortedFunc(func(yield func(redrive.Class) bool) {
		for cl := range res.Sent {
			if !yield(cl) {
				return
			}
		}
	}, func(a, b redrive.Class) int { return strings.Compare(a.Topic+"\x00"+a.Reason, b.Topic+"\x00"+b.Reason) })
	for _, cl := range classes {
		fmt.Fprintf(std.out, "sent %d %s dead letter%s back to %s\n", res.Sent[cl], cl.Reason, plural(res.Sent[cl]), cl.Topic)
	}
	if err != nil {
		return fmt.Errorf("%w (sent %d back before it stopped; running it again resumes)", err, res.Total())
	}
	fmt.Fprintf(std.out, "sent %d dead letter%s back in %s\n", res.Total(), plural(res.Total()), res.Elapsed.Round(time.Millisecond))
	return nil
}

// parseSince parses --since: an RFC 3339 time, or a duration before now.
func parseSince(s string, now time.Time) (time.Time, error) {
	if s == "" {
		return time.Time{}, nil
	}
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil || d < 0 {
		return time.Time{}, fmt.Errorf("want an RFC 3339 time (2025-06-01T12:00:00Z) or a duration (2h), got %q", s)
	}
	return now.Add(-d), nil
}

// printPlan writes the plan: one line per source topic and reason, then
// examples of what would be sent.
func printPlan(w io.Writer, p *redrive.Plan, cfg *redrive.Config) {
	var all int64
	for _, o := range p.Ends {
		all += o
	}
	if len(p.Classes) == 0 && len(p.Skipped) == 0 {
		fmt.Fprintf(w, "No dead letters in %s.\n", p.Topic)
		return
	}
	fmt.Fprintf(w, "Dead letters in %s (up to its end now):\n\n", p.Topic)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "SOURCE\tREASON\tTO SEND\tREDRIVEN BEFORE\tOLDER THAN --since\tNOT SELECTED\t")
	for _, c := range p.Classes {
		fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%d\t%d\t\n", c.Topic, c.Reason, c.Pending, c.Handled, c.Older, c.Unselected)
	}
	tw.Flush()
	for _, why := range slices.Sorted(func(yield func(string) bool) {
		for k := range p.Skipped {
			if !yield(k) {
				return
			}
		}
	}) {
		fmt.Fprintf(w, "never sent: %d (%s)\n", p.Skipped[why], why)
	}
	var ex []string
	for _, c := range p.Classes {
		for _, e := range c.Examples {
			ex = append(ex, fmt.Sprintf("  %s/%d@%d -> %s/%d (was %d@%d) key %s at %s: %s",
				p.Topic, e.Partition, e.Offset, c.Topic, e.To, e.SourcePartition, e.SourceOffset,
				strconv.Quote(string(e.Key)), e.Timestamp.UTC().Format(time.RFC3339), e.Message))
		}
	}
	if len(ex) > 0 {
		fmt.Fprintf(w, "\nFor example:\n%s\n", strings.Join(ex, "\n"))
	}
	if cfg.Since.IsZero() {
		fmt.Fprintln(w)
	} else {
		fmt.Fprintf(w, "\n(--since %s)\n", cfg.Since.UTC().Format(time.RFC3339))
	}
}
