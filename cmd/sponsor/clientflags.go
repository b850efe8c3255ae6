package main

import (
	"errors"
	"flag"
	"fmt"
	"net/http"
	"strings"

	"github.com/sponsored/sponsor/kafkaconn"

	"github.com/twmb/franz-go/pkg/kadm"
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
	// group and shadow are --group and --shadow, of the tools that
	// register them (registerRun).
	group, shadow string
	// sec holds the security flags; kafkaconn.Security turns them into
	// client options, reading the secret files.
	sec kafkaconn.Security
}

// register registers the client flags on fs.
func (c *clientFlags) register(fs *flag.FlagSet) {
	registerBrokers(fs, &c.brokers)
	registerRegistry(fs, &c.registry, "schema registry URL (required)")
	registerTopicPrefix(fs, &c.prefix, "prefix of every topic name, as given to the pipeline")
	registerSecurity(fs, &c.sec)
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

// newAdmin returns an admin client made with opts (clientOpts), for the
// tools that make their own; closing it closes its client.
func newAdmin(opts []kgo.Opt) (*kadm.Client, error) {
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		return nil, fmt.Errorf("kafka client: %w", err)
	}
	return kadm.NewClient(cl), nil
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
