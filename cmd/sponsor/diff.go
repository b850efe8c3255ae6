package main

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/sponsored/sponsor/ops/audit"
	"github.com/sponsored/sponsor/topics"
)

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

func cmdDiff(ctx context.Context, fs *flagSet, std stdio) error {
	var (
		c        clientFlags
		campaign string
		limit    int
	)
	c.register(fs.FlagSet)
	c.registerRun(fs.FlagSet, "the pipeline's consumer group", "the shadow run to compare with (required)")
	fs.StringVar(&campaign, "campaign", "", "compare only this campaign")
	fs.IntVar(&limit, "n", 10, "list at most N differences of each kind")
	if _, err := fs.parse(); err != nil {
		return err
	}
	shadow := c.shadow
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
	shadowRun, err := c.run()
	if err != nil {
		return err
	}
	live := shadowRun
	live.Shadow = ""
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
