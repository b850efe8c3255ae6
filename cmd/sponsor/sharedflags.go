package main

import (
	"flag"
	"fmt"
	"time"

	"github.com/sponsored/sponsor/policy"
	"github.com/sponsored/sponsor/topics"
)

// The flags several commands share are registered here, each by one
// function, so that a flag has one name, one default and one meaning
// everywhere; doc says what it does for the command at hand.

// registerBrokers registers --brokers, the Kafka seed brokers.
func registerBrokers(fs *flag.FlagSet, p *string) {
	fs.StringVar(p, "brokers", "", "Kafka seed brokers, HOST:PORT[,...] (required)")
}

// registerRegistry registers --registry, the schema registry's URL.
func registerRegistry(fs *flag.FlagSet, p *string, doc string) {
	fs.StringVar(p, "registry", "", doc)
}

// registerTopicPrefix registers --topic-prefix, the prefix of every topic
// name (topics.Run.Prefix).
func registerTopicPrefix(fs *flag.FlagSet, p *string, doc string) {
	fs.StringVar(p, "topic-prefix", "", doc)
}

// registerGroup registers --group, the consumer group of the (real)
// pipeline, default topics.DefaultGroup (topics.Run.Group).
func registerGroup(fs *flag.FlagSet, p *string, doc string) {
	fs.StringVar(p, "group", topics.DefaultGroup, doc)
}

// registerShadow registers --shadow, the name of a shadow run of the
// group (topics.Run.Shadow): `sponsor run --shadow NAME` and the tools
// that work on that run's group, state or topics.
func registerShadow(fs *flag.FlagSet, p *string, doc string) {
	fs.StringVar(p, "shadow", "", doc)
}

// registerStateDir registers --state-dir, the folder of an instance's
// state (`sponsor run --state-dir`).
func registerStateDir(fs *flag.FlagSet, p *string, doc string) {
	fs.StringVar(p, "state-dir", "", doc)
}

// registerRetention registers --contact-retention, how long a contact is
// kept without interaction (policy.Config.ContactRetention): the rule of
// run and dev, and how state get judges a stored contact's expiry.
func registerRetention(fs *flag.FlagSet, p *time.Duration, doc string) {
	fs.DurationVar(p, "contact-retention", policy.DefaultContactRetention, doc)
}

// registerGrace registers --grace, the allowed lateness of interactions
// (policy.Config.Grace), default 0.
func registerGrace(fs *flag.FlagSet, p *time.Duration, doc string) {
	fs.DurationVar(p, "grace", 0, doc)
}

// partitioners names the values of --partitioner, for its help.
const partitioners = "murmur2 (the Java client's and franz-go's default, librdkafka's partitioner=murmur2_random) or crc32 (librdkafka's consistent and consistent_random, its default)"

// registerPartitioner registers --partitioner, the partitioner of
// interactions: the pipeline's, and that of the tools that write
// interactions or find a user's partition (produce, gen, explain,
// deadletter redrive).
func registerPartitioner(fs *flag.FlagSet, p *string, doc string) {
	fs.StringVar(p, "partitioner", string(topics.DefaultPartitioner), doc)
}

// toolPartitionerDoc is the help of a tool's --partitioner.
const toolPartitionerDoc = "the partitioner of interactions, as the pipeline's --partitioner: " + partitioners

// partitioner returns the partitioner of --partitioner, or an error naming
// the flag.
func partitioner(name string) (topics.Partitioner, error) {
	p := topics.Partitioner(name)
	if err := p.Validate(); err != nil {
		return "", fmt.Errorf("--partitioner: %w", err)
	}
	return p, nil
}

// registerRun registers --group and, with shadowDoc not empty, --shadow,
// for a tool that works on one run of the pipeline (replay, diff, explain,
// state rebuild, deadletter redrive, txn): with --topic-prefix they name
// the run, and topics.Run derives its group and topics (clientFlags.run).
func (c *clientFlags) registerRun(fs *flag.FlagSet, groupDoc, shadowDoc string) {
	registerGroup(fs, &c.group, groupDoc)
	if shadowDoc != "" {
		registerShadow(fs, &c.shadow, shadowDoc)
	}
}

// run returns the run of the pipeline that the flags name, or an error
// naming --shadow if its name is not valid.
func (c *clientFlags) run() (topics.Run, error) {
	run := topics.Run{Prefix: c.prefix, Group: c.group, Shadow: c.shadow}
	if err := run.Validate(); err != nil {
		return run, fmt.Errorf("--shadow: %w", err)
	}
	return run, nil
}
