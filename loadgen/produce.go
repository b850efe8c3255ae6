package loadgen

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sr"

	"github.com/sponsored/sponsor/schemas"
	"github.com/sponsored/sponsor/schemas/wire"
	"github.com/sponsored/sponsor/topics"
)

// Target says where records go.
type Target struct {
	// Brokers are the Kafka seed brokers. Required.
	Brokers []string
	// Registry is the schema registry URL. Required.
	Registry string
	// Topics names the topics; Interactions, Campaigns and Inbox are used
	// (the serde registers its schemas under their subjects). Required:
	// usually topics.NewNames(prefix, group).
	Topics topics.Names
	// ClientOpts are extra franz-go options for every client (TLS, SASL),
	// e.g. from kafkaconn.Security.KafkaOpts.
	ClientOpts []kgo.Opt
	// RegistryOpts are extra options of the schema registry client (basic
	// auth, bearer token, TLS), e.g. from kafkaconn.Security.RegistryOpts.
	RegistryOpts []sr.ClientOpt
	// Partitioner places the interactions written: it must be the
	// pipeline's (its Config.Partitioner), which dead-letters a record on
	// any other partition. Default topics.DefaultPartitioner.
	Partitioner topics.Partitioner
}

func (t Target) validate() error {
	switch {
	case len(t.Brokers) == 0:
		return errors.New("loadgen: no brokers")
	case t.Registry == "":
		return errors.New("loadgen: no schema registry URL")
	case t.Topics.Interactions == "" || t.Topics.Campaigns == "" || t.Topics.Inbox == "":
		return errors.New("loadgen: topic names missing")
	}
	if err := t.Partitioner.Validate(); err != nil {
		return fmt.Errorf("loadgen: %w", err)
	}
	return nil
}

// serde registers the schemas and returns the serde of t's topics.
func (t Target) serde(ctx context.Context) (*wire.Serde, error) {
	rc, err := sr.NewClient(append([]sr.ClientOpt{sr.URLs(t.Registry)}, t.RegistryOpts...)...)
	if err != nil {
		return nil, fmt.Errorf("schema registry %s: %w", t.Registry, err)
	}
	return wire.New(ctx, rc, wire.Topics{Interactions: t.Topics.Interactions, Campaigns: t.Topics.Campaigns, Inbox: t.Topics.Inbox})
}

// requireTopics fails, saying what to do, if a topic does not exist.
func requireTopics(ctx context.Context, cl *kgo.Client, names ...string) error {
	td, err := kadm.NewClient(cl).ListTopics(ctx, names...)
	if err != nil {
		return fmt.Errorf("list topics: %w", err)
	}
	for _, n := range names {
		d, ok := td[n]
		if !ok || errors.Is(d.Err, kerr.UnknownTopicOrPartition) {
			return fmt.Errorf("topic %q does not exist: start the pipeline first (`sponsor dev`, or `sponsor run --create-topics`), or check --topic-prefix", n)
		}
		if d.Err != nil {
			return fmt.Errorf("topic %q: %w", n, d.Err)
		}
	}
	return nil
}

// Produce writes ins to the interactions topic and camps to the campaigns
// topic in one Kafka transaction: a reader with read_committed sees all of
// them or, if Produce fails, none. Every record is encoded before anything is
// written, so a value the serde refuses writes nothing. It returns the number
// of records written.
//
// The transactional id is "sponsor-produce-" and a random suffix: each call
// is its own producer and fences nobody.
func Produce(ctx context.Context, t Target, ins []schemas.Interaction, camps []schemas.Campaign) (int, error) {
	if err := t.validate(); err != nil {
		return 0, err
	}
	serde, err := t.serde(ctx)
	if err != nil {
		return 0, err
	}
	recs := make([]*kgo.Record, 0, len(ins)+len(camps))
	for i := range ins {
		v, err := serde.AppendInteraction(nil, &ins[i])
		if err != nil {
			return 0, fmt.Errorf("interaction %d (event %q): %w", i+1, ins[i].EventID, err)
		}
		recs = append(recs, &kgo.Record{Topic: t.Topics.Interactions, Key: []byte(ins[i].UserID), Value: v})
	}
	for i := range camps {
		v, err := serde.AppendCampaign(nil, &camps[i])
		if err != nil {
			return 0, fmt.Errorf("campaign %d (%q): %w", i+1, camps[i].CampaignID, err)
		}
		recs = append(recs, &kgo.Record{Topic: t.Topics.Campaigns, Key: []byte(camps[i].CampaignID), Value: v})
	}
	if len(recs) == 0 {
		return 0, nil
	}
	var need []string
	if len(ins) > 0 {
		need = append(need, t.Topics.Interactions)
	}
	if len(camps) > 0 {
		need = append(need, t.Topics.Campaigns)
	}
	cl, err := kgo.NewClient(append(append([]kgo.Opt{}, t.ClientOpts...),
		kgo.SeedBrokers(t.Brokers...),
		kgo.RecordPartitioner(t.Partitioner.ProducerPartitioner()),
		kgo.TransactionalID("sponsor-produce-"+randomID()),
		kgo.TransactionTimeout(time.Minute),
	)...)
	if err != nil {
		return 0, err
	}
	defer cl.Close()
	if err := requireTopics(ctx, cl, need...); err != nil {
		return 0, err
	}
	if err := cl.BeginTransaction(); err != nil {
		return 0, err
	}
	var perr error
	for _, r := range cl.ProduceSync(ctx, recs...) {
		if r.Err != nil {
			perr = fmt.Errorf("produce to %s: %w", r.Record.Topic, r.Err)
			break
		}
	}
	commit := kgo.TryCommit
	if perr != nil {
		commit = kgo.TryAbort
	}
	// The transaction must end even if ctx is cancelled meanwhile.
	endCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	if err := cl.EndTransaction(endCtx, commit); err != nil && perr == nil {
		perr = fmt.Errorf("commit transaction: %w", err)
	}
	if perr != nil {
		return 0, fmt.Errorf("%w (the transaction is aborted: nothing is visible to read_committed readers)", perr)
	}
	return len(recs), nil
}

func randomID() string {
	var b [8]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
