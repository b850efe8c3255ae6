package main

import (
	"errors"
	"flag"
	"fmt"
	"net/http"
	"strings"

	"github.com/sponsored/sponsor/kafkaconn"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sr"

	"github.com/sponsored/sponsor/loadgen"
	"github.com/sponsored/sponsor/ops/audit"
	"github.com/sponsored/sponsor/topics"
)

// clientFlags are the connection flags of every tool (produce, gen, tail,
// report, explain, diff, replay, deadletter redrive, state rebuild): the
// brokers, the schema registry and the topic prefix, and the security flags
// of `sponsor run` (TLS and SASL to Kafka, authentication and TLS to the
// registry), with the same names and SPONSOR_* variables, so that a tool
// reaches a secured cluster with the settings of the pipeline.
type clientFlags struct {
	brokers, registry, prefix string
	// sec holds the security flags; kafkaconn.Security turns them into
	// client options, reading the secret files.
	sec kafkaconn.Security
}

func (c *clientFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&c.brokers, "brokers", "", "Kafka seed brokers, HOST:PORT[,...] (required)")
	fs.StringVar(&c.registry, "registry", "", "schema registry URL (required)")
	fs.StringVar(&c.prefix, "topic-prefix", "", "prefix of every topic name, as given to the pipeline")
	registerSecurity(fs, &c.sec)
}

// partitioners names the values of --partitioner, for its help.
const partitioners = "murmur2 (the Java client's and franz-go's default, librdkafka's partitioner=murmur2_random) or crc32 (librdkafka's consistent and consistent_random, its default)"

// registerPartitioner registers --partitioner in fs, for the tools that
// write interactions or find a user's partition (produce, gen, explain,
// deadletter redrive).
func registerPartitioner(fs *flag.FlagSet, p *string) {
	fs.StringVar(p, "partitioner", string(topics.DefaultPartitioner), "the partitioner of interactions, as the pipeline's --partitioner: "+partitioners)
}

// partitioner returns the partitioner of --partitioner, or an error naming
// the flag.
func partitioner(name string) (topics.Partitioner, error) {
	p := topics.Partitioner(name)
	if err := p.Validate(); err != nil {
		return "", fmt.Errorf("--partitioner: %w", err)
	}
	return p, nil
}

// brokerList returns the seed brokers of --brokers, which is required.
func (c *clientFlags) brokerList() ([]string, error) {
	if c.brokers == "" {
		return nil, errors.New("--brokers is required")
	}
	return strings.Split(c.brokers, ","), nil
}

// kafkaOpts returns the franz-go options for TLS and SASL to the brokers
// (none without security flags), for every Kafka client of a tool. The
// seed brokers are not among them.
func (c *clientFlags) kafkaOpts() ([]kgo.Opt, error) {
	opts, err := c.sec.KafkaOpts()
	if err != nil {
		return nil, fmt.Errorf("security flags: %w", err)
	}
	return opts, nil
}

// registryOpts returns the schema registry options for basic auth or a
// bearer token and a private CA (none without security flags). The URL is
// not among them.
func (c *clientFlags) registryOpts() ([]sr.ClientOpt, error) {
	opts, err := c.sec.RegistryOpts()
	if err != nil {
		return nil, fmt.Errorf("security flags: %w", err)
	}
	return opts, nil
}

// clientOpts returns the options of a Kafka client built by the command
// itself (replay, state rebuild): the seed brokers, then kafkaOpts.
func (c *clientFlags) clientOpts() ([]kgo.Opt, error) {
	brokers, err := c.brokerList()
	if err != nil {
		return nil, err
	}
	opts, err := c.kafkaOpts()
	if err != nil {
		return nil, err
	}
	return append([]kgo.Opt{kgo.SeedBrokers(brokers...)}, opts...), nil
}

// target is the feed package's view of the client flags (produce, gen);
// --brokers and --registry are required.
func (c *clientFlags) target() (loadgen.Target, error) {
	if c.brokers == "" || c.registry == "" {
		return loadgen.Target{}, errors.New("--brokers and --registry are required")
	}
	kopts, err := c.kafkaOpts()
	if err != nil {
		return loadgen.Target{}, err
	}
	ropts, err := c.registryOpts()
	if err != nil {
		return loadgen.Target{}, err
	}
	return loadgen.Target{
		Brokers:      strings.Split(c.brokers, ","),
		Registry:     c.registry,
		Topics:       topics.NewNames(c.prefix, ""),
		ClientOpts:   kopts,
		RegistryOpts: ropts,
	}, nil
}

// auditConfig is the audit package's view of the client flags (report,
// explain, diff).
func (c *clientFlags) auditConfig() (audit.Config, error) {
	t, err := c.target()
	if err != nil {
		return audit.Config{}, err
	}
	return audit.Config{
		Brokers:      t.Brokers,
		Registry:     t.Registry,
		Names:        topics.NewNames(c.prefix, ""),
		ClientOpts:   t.ClientOpts,
		RegistryOpts: t.RegistryOpts,
	}, nil
}

// securityHint adds to err, when the schema registry or Kafka refused the
// tool's credentials, which flags give them. (franz-go already says "is SASL
// missing?" or "is TLS missing?" when a broker closes a connection that
// lacks them.) Other errors are returned as they are.
func securityHint(err error) error {
	var re *sr.ResponseError
	switch {
	case err == nil:
		return nil
	case errors.As(err, &re) && re.StatusCode == http.StatusUnauthorized:
		return fmt.Errorf("%w (the schema registry answered 401 Unauthorized: give its credentials with --registry-user and --registry-password-file, or --registry-token-file)", err)
	case errors.As(err, &re) && re.StatusCode == http.StatusForbidden:
		return fmt.Errorf("%w (the schema registry answered 403 Forbidden: check --registry-user and its password, or --registry-token-file, and what they may do)", err)
	case errors.Is(err, kerr.SaslAuthenticationFailed):
		return fmt.Errorf("%w (check --sasl-mechanism, --sasl-user and --sasl-password-file)", err)
	}
	return err
}
