package main

import (
	"context"
	"errors"
	"fmt"
	"os"

	"github.com/sponsored/sponsor/loadgen"
	"github.com/sponsored/sponsor/schemas"
	"github.com/sponsored/sponsor/schemas/jsonl"
)

// stdio are a command's standard streams, so tests can run commands
// in-process.
const produceUsage = `Usage: sponsor produce interactions|campaigns --brokers HOST:PORT[,...] --registry URL [--topic-prefix P] [FILE|-]

Reads records as JSON lines from FILE (or stdin: - or no FILE) and writes
them to the interactions or campaigns topic, in the schema-registry wire
format, keyed as the contract says (interactions by user_id, placed by
--partitioner as the pipeline's; campaigns by campaign_id), all in one
Kafka transaction. Every line is checked first: if
any is bad, each problem is printed as FILE:LINE: field X: reason and
nothing is written.

  {"event_id":"ev-1","user_id":"user-1","business_id":"biz-1","kind":"USER_MESSAGE","occurred_at":"2025-06-01T12:00:00Z"}
  {"campaign_id":"camp-1","business_id":"biz-1","action":"LAUNCH","send_at":"2025-06-01T13:00:00Z",
   "expires_at":1748869200000,"audience":[{"kind":"BOT_CTA_CLICK","within_days":7}],
   "message":{"text":"10% off","cta_label":"Shop","cta_url":"https://example.com"}}

Timestamps are RFC 3339 strings or epoch milliseconds; "audience" (every
contact) and "cta_label"/"cta_url" (null) may be left out.

Flags (also SPONSOR_<NAME> in the environment):
`

func cmdProduce(ctx context.Context, fs *flagSet, std stdio) error {
	var c clientFlags
	var part string
	c.register(fs.FlagSet)
	registerPartitioner(fs.FlagSet, &part, toolPartitionerDoc)
	pos, err := fs.parse()
	if err != nil {
		return err
	}
	if len(pos) < 1 || len(pos) > 2 || pos[0] != "interactions" && pos[0] != "campaigns" {
		fs.Usage()
		return errors.New("want interactions or campaigns, then at most one FILE")
	}
	t, err := c.target()
	if err != nil {
		return err
	}
	if t.Partitioner, err = partitioner(part); err != nil {
		return err
	}
	name, in := "stdin", std.in
	if len(pos) == 2 && pos[1] != "-" {
		f, err := os.Open(pos[1])
		if err != nil {
			return err
		}
		defer f.Close()
		name, in = pos[1], f
	}
	var (
		ins   []schemas.Interaction
		camps []schemas.Campaign
		topic string
	)
	if pos[0] == "interactions" {
		ins, err = jsonl.ReadInteractions(in, name)
		topic = t.Topics.Interactions
	} else {
		camps, err = jsonl.ReadCampaigns(in, name)
		topic = t.Topics.Campaigns
	}
	var bad jsonl.Errors
	if errors.As(err, &bad) {
		for _, e := range bad {
			fmt.Fprintln(std.err, e)
		}
		return fmt.Errorf("%s: %d problem(s); nothing written", name, len(bad))
	}
	if err != nil {
		return err
	}
	n, err := loadgen.Produce(ctx, t, ins, camps)
	if err != nil {
		return securityHint(err)
	}
	unit := "records"
	if n == 1 {
		unit = "record"
	}
	fmt.Fprintf(std.out, "wrote %d %s to %s in one transaction\n", n, unit, topic)
	return nil
}
