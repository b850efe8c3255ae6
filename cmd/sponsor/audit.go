package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/sponsored/sponsor/ops/audit"
	"github.com/sponsored/sponsor/schemas"
	"github.com/sponsored/sponsor/topics"
)

const reportUsage = `Usage: sponsor report --campaign C --brokers HOST:PORT[,...] --registry URL [--topic-prefix P] [--inbox] [--json]

Sums the decisions topic's records about campaign C: delivered, and
suppressed by reason, per partition and in all. With --inbox it also counts
C's inbox records, which must equal the delivered count (the decisions and
the inbox are written in the same transactions); a difference is an error.
It reads the whole decisions topic, read_committed.

Flags (also SPONSOR_<NAME> in the environment):
`

func cmdReport(ctx context.Context, args []string, std stdio) error {
	fs := flag.NewFlagSet("sponsor report", flag.ContinueOnError)
	fs.SetOutput(std.err)
	var (
		c        clientFlags
		campaign string
		inbox    bool
		asJSON   bool
	)
	c.register(fs)
	fs.StringVar(&campaign, "campaign", "", "the campaign id (required)")
	fs.BoolVar(&inbox, "inbox", false, "also count the campaign's inbox records and check they match the delivered decisions")
	fs.BoolVar(&asJSON, "json", false, "print the report as JSON")
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), reportUsage)
		fs.PrintDefaults()
	}
	if _, err := parseArgs(fs, args); err != nil {
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

const explainUsage = `Usage: sponsor explain --campaign C --user U --brokers HOST:PORT[,...] --registry URL [--group G] [--topic-prefix P] [--json]

Says whether user U got campaign C and which rule decided: it finds the
decision about the pair on U's partition of the decisions topic, the
delivery in the inbox, and the campaign on the campaigns topic. Without a
decision it says why from the state of U's partition, read from the
changelog of the group: the campaign pending there, its fan-out not yet at
U, cancelled or expired there, or U not a contact of the business (and the
one cause the state shows).

Exit status: 0 a decision about the pair was found; 3 no such campaign (no
LAUNCH on the campaigns topic); 4 no decision about U (explained); 1 an
error, or INCONSISTENT (the decision and the inbox disagree).

Flags (also SPONSOR_<NAME> in the environment):
`

func cmdExplain(ctx context.Context, args []string, std stdio) error {
	fs := flag.NewFlagSet("sponsor explain", flag.ContinueOnError)
	fs.SetOutput(std.err)
	var (
		c                     clientFlags
		campaign, user, group string
		asJSON                bool
		part                  string
	)
	c.register(fs)
	registerPartitioner(fs, &part)
	fs.StringVar(&campaign, "campaign", "", "the campaign id (required)")
	fs.StringVar(&user, "user", "", "the user id (required)")
	fs.StringVar(&group, "group", "sponsor", "the pipeline's consumer group, whose changelog has the state of the user's partition")
	fs.BoolVar(&asJSON, "json", false, "print the explanation as JSON")
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), explainUsage)
		fs.PrintDefaults()
	}
	if _, err := parseArgs(fs, args); err != nil {
		return err
	}
	if campaign == "" || user == "" {
		return errors.New("--campaign and --user are required")
	}
	cfg, err := c.auditConfig()
	if err != nil {
		return err
	}
	if cfg.Partitioner, err = partitioner(part); err != nil {
		return err
	}
	cfg.Names.Changelog = topics.NewNames(c.prefix, group).Changelog
	ex, err := audit.Explain(ctx, cfg, campaign, user)
	if err != nil {
		return securityHint(err)
	}
	var status string // of the campaign on the user's partition
	if ex.State != nil && ex.State.Campaign != nil {
		status = ex.State.Campaign.Status.String()
	}
	if asJSON {
		out := map[string]any{
			"campaign_id": ex.Campaign, "user_id": ex.User, "partition": ex.Partition,
			"verdict": ex.Verdict, "consistent": ex.Consistent, "cancelled": ex.Cancelled,
		}
		if status != "" {
			out["campaign_status"] = status
		}
		if ex.StateNote != "" {
			out["state_note"] = ex.StateNote
		}
		if ex.Decision != nil {
			out["outcome"] = ex.Decision.Outcome.String()
			out["decided_as_of"] = ex.Decision.DecidedAsOf.UTC().Format(time.RFC3339Nano)
			out["delivery_id"] = ex.Decision.DeliveryID
		}
		if ex.Inbox != nil {
			out["inbox"] = map[string]any{"partition": ex.Inbox.Partition, "offset": ex.Inbox.Offset, "delivery_id": ex.Inbox.DeliveryID}
		}
		enc := json.NewEncoder(std.out)
		enc.SetIndent("", "  ")
		if err := enc.Encode(out); err != nil {
			return err
		}
	} else {
		if l := ex.Launch; l != nil {
			fmt.Fprintf(std.out, "campaign %s: business %s, send_at %s, expires_at %s, audience %s%s\n", ex.Campaign, l.BusinessID,
				l.SendAt.UTC().Format(time.RFC3339), l.ExpiresAt.UTC().Format(time.RFC3339), audienceText(l.Audience),
				map[bool]string{true: ", CANCEL received", false: ""}[ex.Cancelled])
		}
		fmt.Fprintf(std.out, "user %s (partition %d): %s\n", ex.User, ex.Partition, ex.Verdict)
		if d := ex.Decision; d != nil {
			fmt.Fprintf(std.out, "decision: %s as of %s, delivery id %s\n", d.Outcome, d.DecidedAsOf.UTC().Format(time.RFC3339), d.DeliveryID)
		}
		if in := ex.Inbox; in != nil {
			fmt.Fprintf(std.out, "inbox: partition %d offset %d, sent_at %s\n", in.Partition, in.Offset, in.SentAt.UTC().Format(time.RFC3339))
		}
	}
	switch {
	case !ex.Consistent:
		return errors.New("the decision and the inbox disagree")
	case ex.Launch == nil:
		return &exitError{code: 3, err: fmt.Errorf("no such campaign %q on %s", campaign, cfg.Names.Campaigns)}
	case ex.Decision == nil:
		return &exitError{code: 4, err: fmt.Errorf("no decision about user %q for campaign %q", user, campaign)}
	}
	return nil
}

func audienceText(rules []schemas.AudienceRule) string {
	if len(rules) == 0 {
		return "all contacts"
	}
	var parts []string
	for _, r := range rules {
		if r.WithinDays == 0 {
			parts = append(parts, r.Kind.String()+" ever")
		} else {
			parts = append(parts, fmt.Sprintf("%s within %d days", r.Kind, r.WithinDays))
		}
	}
	return strings.Join(parts, " or ")
}
