package main

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"

	"github.com/sponsored/sponsor/kafkaconn"

	"github.com/twmb/franz-go/pkg/sr"

	"github.com/sponsored/sponsor/schemas"
	"github.com/sponsored/sponsor/schemas/compat"
	"github.com/sponsored/sponsor/schemas/wire"
	"github.com/sponsored/sponsor/topics"
)

const schemasUsage = `Usage: sponsor schemas check FILE.avsc [--against interactions|campaigns] [--registry URL [--topic-prefix P]]

Tells whether FILE.avsc, a new version of an input schema, can be deployed:
records written with it must be readable by the pipeline's schema (FORWARD),
and records already written must be readable with it (BACKWARD), by Avro's
resolution rules. It compares with the schema built into this binary and,
with --registry, also with the latest version registered under the topic's
subject. Exit status 0: compatible; 1: not, with each incompatibility
explained.

--against defaults to the topic of the file's record (Interaction:
interactions, Campaign: campaigns).

Flags (also SPONSOR_<NAME> in the environment):
`

// errIncompatible is returned, after the report, when a schema is not
// compatible.
var errIncompatible = errors.New("not compatible")

func cmdSchemas(ctx context.Context, fs *flagSet, std stdio) error {
	var against, registry, prefix string
	fs.StringVar(&against, "against", "", "interactions or campaigns (default: from the file's record name)")
	registerRegistry(fs.FlagSet, &registry, "schema registry URL: also check against the subject's latest version")
	registerTopicPrefix(fs.FlagSet, &prefix, "prefix of the topic names (the subject is <prefix><topic>-value)")
	// Only the registry's security flags: check reads no Kafka topic.
	var sec kafkaconn.Security
	registerRegistrySecurity(fs.FlagSet, &sec)
	pos, err := fs.parse()
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		fs.Usage()
		return errors.New("want: check FILE.avsc")
	}
	file := pos[0]
	b, err := os.ReadFile(file)
	if err != nil {
		return err
	}
	text := string(b)
	name, err := compat.Parse(text)
	if err != nil {
		return fmt.Errorf("%s: %w", file, err)
	}
	if against == "" {
		switch name {
		case "Interaction", "sponsor.v1.Interaction":
			against = "interactions"
		case "Campaign", "sponsor.v1.Campaign":
			against = "campaigns"
		default:
			return fmt.Errorf("%s: record %q is neither Interaction nor Campaign: give --against interactions|campaigns", file, name)
		}
	}
	var current, topic string
	names := topics.NewNames(prefix, "")
	switch against {
	case "interactions":
		current, topic = schemas.InteractionSchema(), names.Interactions
	case "campaigns":
		current, topic = schemas.CampaignSchema(), names.Campaigns
	default:
		return fmt.Errorf("--against: want interactions or campaigns, got %q", against)
	}

	ok := true
	report := func(what string, ps []compat.Problem) {
		if len(ps) == 0 {
			fmt.Fprintf(std.out, "%s vs %s: compatible (FORWARD and BACKWARD)\n", file, what)
			return
		}
		ok = false
		fmt.Fprintf(std.out, "%s vs %s: NOT compatible\n", file, what)
		for _, p := range ps {
			fmt.Fprintf(std.out, "  %s %s: %s\n      (%s)\n", p.Direction, p.Path, p.Explain, p.Detail)
		}
	}
	ps, err := compat.Check(text, current)
	if err != nil {
		return fmt.Errorf("%s: %w", file, err)
	}
	report("the pipeline's "+against+" schema", ps)

	if registry != "" {
		ropts, err := sec.RegistryOpts()
		if err != nil {
			return fmt.Errorf("security flags: %w", err)
		}
		rc, err := sr.NewClient(append([]sr.ClientOpt{sr.URLs(registry)}, ropts...)...)
		if err != nil {
			return fmt.Errorf("schema registry %s: %w", registry, err)
		}
		subject := wire.Subject(topic)
		latest, err := rc.SchemaByVersion(ctx, subject, -1)
		var re *sr.ResponseError
		switch {
		case errors.As(err, &re) && re.StatusCode == http.StatusNotFound:
			fmt.Fprintf(std.out, "%s: registry %s has no schema under subject %s yet\n", file, registry, subject)
		case err != nil:
			return securityHint(fmt.Errorf("registry %s, subject %s: %w", registry, subject, err))
		default:
			ps, err := compat.Check(text, latest.Schema.Schema)
			if err != nil {
				return fmt.Errorf("registry subject %s version %d: %w", subject, latest.Version, err)
			}
			report(fmt.Sprintf("registry subject %s version %d (id %d)", subject, latest.Version, latest.ID), ps)
		}
	}
	if !ok {
		return errIncompatible
	}
	return nil
}
