package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/sponsored/sponsor/ops/audit"
	"github.com/sponsored/sponsor/schemas"
)

const reportUsage = `Usage: sponsor report --campaign C --brokers HOST:PORT[,...] --registry URL [--topic-prefix P] [--inbox] [--json]

Sums the decisions topic's records about campaign C: delivered, and
suppressed by reason, per partition and in all. With --inbox it also counts
C's inbox records, which must equal the delivered count (the decisions and
the inbox are written in the same transactions); a difference is an error.
It reads the whole decisions topic, read_committed.

Flags (also SPONSOR_<NAME> in the environment):
`

func cmdReport(ctx context.Context, fs *flagSet, std stdio) error {
	var (
		c        clientFlags
		campaign string
		inbox    bool
		asJSON   bool
	)
	c.register(fs.FlagSet)
	fs.StringVar(&campaign, "campaign", "", "the campaign id (required)")
	fs.BoolVar(&inbox, "inbox", false, "also count the campaign's inbox records and check they match the delivered decisions")
	fs.BoolVar(&asJSON, "json", false, "print the report as JSON")
	if _, err := fs.parse(); err != nil {
		return err
	}
	if campaign == "" {
		return errors.New("--campaign is required")
	}
	cfg, err := c.auditConfig()
	if err != nil {
		return err
	}
	rep, err := audit.CampaignReport(ctx, cfg, campaign, inbox)
	if err != nil {
		return securityHint(err)
	}
	if rep.Business == "" {
		return fmt.Errorf("no decision about campaign %q among the %d on %s: it has not fired yet, was cancelled or expired, its business has no contact, or the pipeline runs with --decisions=false",
			campaign, rep.Decisions, cfg.Names.Decisions)
	}
	if asJSON {
		type counts struct {
			Delivered  int64            `json:"delivered"`
			Suppressed int64            `json:"suppressed"`
			ByOutcome  map[string]int64 `json:"by_outcome"`
		}
		out := struct {
			Campaign     string           `json:"campaign_id"`
			Business     string           `json:"business_id"`
			DecidedAsOf  string           `json:"decided_as_of"`
			Total        counts           `json:"total"`
			Partitions   map[int32]counts `json:"partitions"`
			InboxRecords *int64           `json:"inbox_records,omitempty"`
		}{Campaign: rep.Campaign, Business: rep.Business, DecidedAsOf: rep.DecidedAsOf.UTC().Format(time.RFC3339Nano), Partitions: map[int32]counts{}}
		mk := func(c *audit.Counts) counts {
			return counts{Delivered: c[schemas.Delivered], Suppressed: c.Suppressed(), ByOutcome: c.Map()}
		}
		out.Total = mk(&rep.Total)
		for p, c := range rep.Partitions {
			out.Partitions[p] = mk(c)
		}
		if rep.InboxRecords >= 0 {
			out.InboxRecords = &rep.InboxRecords
		}
		enc := json.NewEncoder(std.out)
		enc.SetIndent("", "  ")
		if err := enc.Encode(out); err != nil {
			return err
		}
	} else {
		fmt.Fprintf(std.out, "campaign %s, business %s, fired as of %s\n", rep.Campaign, rep.Business, rep.DecidedAsOf.UTC().Format(time.RFC3339))
		tw := tabwriter.NewWriter(std.out, 0, 0, 2, ' ', tabwriter.AlignRight)
		fmt.Fprintf(tw, "partition\t%s\tsuppressed\t\n", strings.Join(schemas.Outcomes[:], "\t"))
		row := func(name string, c *audit.Counts) {
			fmt.Fprintf(tw, "%s", name)
			for _, k := range c {
				fmt.Fprintf(tw, "\t%d", k)
			}
			fmt.Fprintf(tw, "\t%d\t\n", c.Suppressed())
		}
		for _, p := range rep.SortedPartitions() {
			row(fmt.Sprint(p), rep.Partitions[p])
		}
		row("all", &rep.Total)
		if err := tw.Flush(); err != nil {
			return err
		}
		if rep.InboxRecords >= 0 {
			fmt.Fprintf(std.out, "inbox records of the campaign: %d\n", rep.InboxRecords)
		}
	}
	if rep.InboxRecords >= 0 && rep.InboxRecords != rep.Total[schemas.Delivered] {
		return fmt.Errorf("the inbox has %d records of campaign %s but %d decisions say DELIVERED (inbox retention shorter than the decisions'?)",
			rep.InboxRecords, campaign, rep.Total[schemas.Delivered])
	}
	return nil
}
