package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/sponsored/sponsor/ops/audit"
	"github.com/sponsored/sponsor/schemas"
)

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

func cmdExplain(ctx context.Context, fs *flagSet, std stdio) error {
	var (
		c              clientFlags
		campaign, user string
		asJSON         bool
		part           string
	)
	c.register(fs.FlagSet)
	registerPartitioner(fs.FlagSet, &part, toolPartitionerDoc)
	fs.StringVar(&campaign, "campaign", "", "the campaign id (required)")
	fs.StringVar(&user, "user", "", "the user id (required)")
	c.registerRun(fs.FlagSet, "the pipeline's consumer group, whose changelog has the state of the user's partition", "")
	fs.BoolVar(&asJSON, "json", false, "print the explanation as JSON")
	if _, err := fs.parse(); err != nil {
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
	run, err := c.run()
	if err != nil {
		return err
	}
	cfg.Names.Changelog = run.Names().Changelog
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
