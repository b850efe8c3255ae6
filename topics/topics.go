// Package topics is the catalog of the Kafka topics the pipeline reads, writes
// and owns: their names (and, in Run, every other name a run of the
// pipeline implies: its consumer group, its transactional ids, a shadow
// run's own topics), partition counts and configs, the partitioner that
// maps a user's key to its partition (Partitioner, part of the contract with
// the producers), and the start-up check that creates what is missing and
// refuses a cluster whose topics would break the pipeline's guarantees
// (co-partitioning, a compacted changelog).
//
// It talks to Kafka only through a *kadm.Client given by the caller; it does
// not produce or consume (Partitioner.ProducerPartitioner is for the
// caller's producers). What each topic is for is in DESIGN.md; the choices
// made here (partition counts, retention) are documented on Catalog.Specs.
package topics

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
)

// Roles of the topics, as in Spec.Role and TopicError.Role.
const (
	RoleInteractions = "interactions"
	RoleCampaigns    = "campaigns"
	RoleInbox        = "inbox"
	RoleDeadLetter   = "deadletter"
	RoleChangelog    = "changelog"
	RoleDecisions    = "decisions"
)

const (
	// DefaultPartitions is the partition count of interactions when Ensure
	// creates it (dev and test mode) and Catalog.Partitions is 0.
	DefaultPartitions int32 = 6

	// CampaignPartitions is the partition count of campaigns when Ensure
	// creates it. Every instance reads the whole topic (campaigns are
	// broadcast), so more partitions buy nothing; an existing campaigns topic
	// may have any count.
	CampaignPartitions int32 = 1

	// DeadLetterRetention is how long the dead-letter topic keeps records
	// when Ensure creates it: long enough for the platform team that sent a
	// bad record to notice, fix and replay it.
	DeadLetterRetention = 30 * 24 * time.Hour
	// ChangelogDeleteRetention is how long the changelog keeps deletions
	// (delete.retention.ms): a state folder offline for longer must be
	// rebuilt from scratch (delete it).
	ChangelogDeleteRetention = 7 * 24 * time.Hour
	// DecisionsRetention is how long the decisions topic (the audit trail
	// of every (campaign, user) decision) keeps records when Ensure creates
	// it and Catalog.DecisionsRetention is 0: long enough to answer an
	// advertiser's or a user's question about last month's campaigns. Set
	// --decisions-retention (or raise it on the topic) for longer audits.
	DecisionsRetention = 90 * 24 * time.Hour
)

// Names holds the name of every topic the pipeline uses.
type Names struct {
	Interactions string // input, keyed by user_id
	Campaigns    string // input, keyed by campaign_id, read whole by every instance
	Inbox        string // output, keyed by user_id, co-partitioned with Interactions
	DeadLetter   string // output, every record the pipeline could not accept
	Changelog    string // the pipeline's state, compacted, one partition per task
	Decisions    string // output, keyed by user_id, the audit trail; "" when turned off
}

// NewNames returns the topic names for a prefix ("" in the default set-up)
// and the consumer group name: interactions, campaigns, inbox, deadletter and
// decisions with the prefix, and prefix+group+"-state-changelog" for the
// changelog, so that two groups running the pipeline on one cluster keep
// separate state. These are the real pipeline's names; Run.Names derives a
// shadow run's (and is the one to use where a --shadow may be given).
func NewNames(prefix, group string) Names {
	return Names{
		Interactions: prefix + "interactions",
		Campaigns:    prefix + "campaigns",
		Inbox:        prefix + "inbox",
		DeadLetter:   prefix + "deadletter",
		Changelog:    prefix + group + "-state-changelog",
		Decisions:    prefix + "decisions",
	}
}

// DefaultGroup is the consumer group of the pipeline when none is given
// (sponsor run --group).
const DefaultGroup = "sponsor"

// shadowTag marks the names of a shadow run: its group is
// <group>-shadow-<name>, its output topics <prefix>shadow-<name>-<topic>.
const shadowTag = "shadow-"

// Run is one run of the pipeline on a cluster: the real pipeline of a
// consumer group, or one of its shadow runs (sponsor run --shadow NAME: the
// same inputs, read again under a group, state and output topics of its
// own, which no consumer of the real pipeline reads). Every name a run
// implies (its topics, its consumer group, its transactional ids) is
// derived from it here, and nowhere else, for the pipeline and for every
// tool that must find them (replay, diff, state rebuild, deadletter
// redrive, txn).
//
// The zero Run is the real pipeline of DefaultGroup without a prefix.
type Run struct {
	// Prefix is prepended to every topic name (--topic-prefix). Default "".
	Prefix string
	// Group is the consumer group of the real pipeline (--group), also for
	// a shadow run of it. Default DefaultGroup.
	Group string
	// Shadow names the shadow run (--shadow); "" is the real pipeline.
	Shadow string
}

// group returns r.Group or its default.
func (r Run) group() string {
	if r.Group == "" {
		return DefaultGroup
	}
	return r.Group
}

// ConsumerGroup returns the consumer group the run's instances join, whose
// committed offsets on interactions are its position: Group for the real
// pipeline, Group+"-shadow-"+Shadow for a shadow run.
func (r Run) ConsumerGroup() string {
	if r.Shadow == "" {
		return r.group()
	}
	return r.group() + "-" + shadowTag + r.Shadow
}

// TransactionalID returns the transactional id of the run's instance with
// the given stable identity: ConsumerGroup()+"-"+instanceID, so that a
// restart fences its previous incarnation and two runs never fence each
// other.
func (r Run) TransactionalID(instanceID string) string {
	return r.ConsumerGroup() + "-" + instanceID
}

// Names returns the run's topic names. The real pipeline's are
// NewNames(Prefix, Group). A shadow run reads the same inputs
// (interactions and campaigns) and has outputs of its own, so that it
// (a replay with other rules, a new version) writes nothing a consumer of
// the real pipeline reads: Prefix+"shadow-"+Shadow+"-inbox", "-deadletter"
// and "-decisions", and the changelog of its ConsumerGroup.
func (r Run) Names() Names {
	n := NewNames(r.Prefix, r.ConsumerGroup())
	if r.Shadow != "" {
		out := NewNames(r.Prefix+shadowTag+r.Shadow+"-", "")
		n.Inbox, n.DeadLetter, n.Decisions = out.Inbox, out.DeadLetter, out.Decisions
	}
	return n
}

// Validate reports an error if r.Shadow is set and cannot name a shadow
// run (ValidShadowName); the caller adds which setting it came from.
func (r Run) Validate() error {
	if r.Shadow != "" && !ValidShadowName(r.Shadow) {
		return fmt.Errorf("%q is not a valid name (letters, digits, '.', '_', '-')", r.Shadow)
	}
	return nil
}

// ValidShadowName reports whether name can name a shadow run: letters,
// digits, '.', '_' and '-', as Kafka topic names allow.
func ValidShadowName(name string) bool {
	if name == "" || len(name) > 100 {
		return false
	}
	for _, r := range name {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '.' || r == '_' || r == '-') {
			return false
		}
	}
	return true
}

// Spec describes one topic of the catalog: what Ensure creates when it is
// missing.
type Spec struct {
	Name              string
	Partitions        int32
	ReplicationFactor int16              // -1: the broker's default.replication.factor
	Configs           map[string]*string // topic configs set at creation; nil: broker defaults
	Owned             bool               // created by the pipeline; false for inputs other teams own
	Role              string             // one of the Role constants
}

// Catalog is the set of topics of one pipeline (one consumer group).
type Catalog struct {
	Names Names

	// Partitions is the partition count of interactions when Ensure creates
	// it (createInputs, dev and test mode only). 0 means DefaultPartitions.
	// Once interactions exists, its count decides inbox's and the changelog's.
	Partitions int32

	// ReplicationFactor of the topics Ensure creates. -1 (or 0) means the
	// broker's default.replication.factor, the right choice on a real
	// cluster; kfake and a single local broker need 1 or -1.
	ReplicationFactor int16

	// DecisionsRetention is the retention.ms of the decisions topic when
	// Ensure creates it, independent of the inbox's. 0 means
	// DecisionsRetention; negative, for ever (-1).
	DecisionsRetention time.Duration
}

// Specs returns the catalog's topics as Ensure creates them, for an
// interactions topic of the given partition count:
//
//   - interactions: Partitions (or DefaultPartitions), broker default configs.
//     Not owned: only created in dev and test mode.
//   - campaigns: CampaignPartitions, broker default configs. Not owned.
//   - inbox: the interactions count, so that inbox partition p holds the
//     users of interactions partition p (co-partitioning); broker defaults
//     (retention is the downstream consumers' decision).
//   - deadletter: the interactions count, so that a flood of bad input (a
//     producer shipping a broken schema) spreads like the input does;
//     cleanup.policy=delete with retention.ms = DeadLetterRetention. An
//     existing dead-letter topic may have any partition count.
//   - changelog: the interactions count (task p's state is in partition p),
//     cleanup.policy=compact: it is the truth the state is rebuilt from, so it
//     must keep the latest value of every key for ever; deletions stay in
//     the log for ChangelogDeleteRetention. compression.type=zstd.
//   - decisions (unless Names.Decisions is empty): the interactions count,
//     task p writing the decisions about its users to partition p;
//     cleanup.policy=delete with retention.ms = Catalog.DecisionsRetention
//     (default DecisionsRetention), compression.type=zstd.
func (c Catalog) Specs(interactionPartitions int32) []Spec {
	rf := c.replicationFactor()
	specs := []Spec{
		{Name: c.Names.Interactions, Partitions: interactionPartitions, ReplicationFactor: rf, Role: RoleInteractions},
		{Name: c.Names.Campaigns, Partitions: CampaignPartitions, ReplicationFactor: rf, Role: RoleCampaigns},
		{Name: c.Names.Inbox, Partitions: interactionPartitions, ReplicationFactor: rf, Owned: true, Role: RoleInbox},
		{
			Name: c.Names.DeadLetter, Partitions: interactionPartitions, ReplicationFactor: rf, Owned: true, Role: RoleDeadLetter,
			Configs: map[string]*string{
				"cleanup.policy": kadm.StringPtr("delete"),
				"retention.ms":   kadm.StringPtr(strconv.FormatInt(DeadLetterRetention.Milliseconds(), 10)),
			},
		},
		{
			Name: c.Names.Changelog, Partitions: interactionPartitions, ReplicationFactor: rf, Owned: true, Role: RoleChangelog,
			Configs: map[string]*string{
				"cleanup.policy": kadm.StringPtr("compact"),
				// A state folder offline for less than this can restore
				// from its checkpoint: the deletions since are still in
				// the log (see docs/design.md, known limits).
				"delete.retention.ms": kadm.StringPtr(strconv.FormatInt(ChangelogDeleteRetention.Milliseconds(), 10)),
				// Kept compressed with zstd whatever wrote it (the
				// pipeline's producer writes zstd already): random ids
				// need an entropy coder to shrink.
				"compression.type": kadm.StringPtr("zstd"),
			},
		},
	}
	if c.Names.Decisions != "" {
		specs = append(specs, Spec{
			Name: c.Names.Decisions, Partitions: interactionPartitions, ReplicationFactor: rf, Owned: true, Role: RoleDecisions,
			Configs: map[string]*string{
				"cleanup.policy": kadm.StringPtr("delete"),
				"retention.ms":   kadm.StringPtr(strconv.FormatInt(c.decisionsRetentionMs(), 10)),
				// As the changelog: only this project's tools read it.
				"compression.type": kadm.StringPtr("zstd"),
			},
		})
	}
	return specs
}

// decisionsRetentionMs is the decisions topic's retention.ms.
func (c Catalog) decisionsRetentionMs() int64 {
	switch {
	case c.DecisionsRetention == 0:
		return DecisionsRetention.Milliseconds()
	case c.DecisionsRetention < 0:
		return -1
	}
	return max(c.DecisionsRetention.Milliseconds(), 1)
}

func (c Catalog) replicationFactor() int16 {
	if c.ReplicationFactor == 0 {
		return -1
	}
	return c.ReplicationFactor
}

func (c Catalog) partitions() int32 {
	if c.Partitions <= 0 {
		return DefaultPartitions
	}
	return c.Partitions
}

// Ensure creates the catalog's missing topics and checks the existing ones,
// and returns the partition count of interactions, which is the number of
// tasks.
//
//   - interactions and campaigns are created only if createInputs is true
//     (dev and test mode); otherwise a missing one is an ErrMissingTopic.
//   - inbox and the changelog must have the interactions' partition count
//     (ErrCoPartitioning otherwise), and the changelog must be compacted
//     (ErrNotCompacted otherwise). Missing, they are created so.
//   - deadletter is created if missing; any existing one is accepted.
//
// Every problem found is reported, joined (errors.Join), each as a
// *TopicError that says what to do; errors.Is finds the sentinels through
// it. Nothing is ever altered or deleted: an existing topic that is wrong
// stays as it is, for an operator to fix.
//
// Ensure is safe to run from several instances at once: a topic another
// instance created first is re-read and checked like any existing one.
func (c Catalog) Ensure(ctx context.Context, adm *kadm.Client, createInputs bool) (int32, error) {
	specs := c.Specs(c.partitions())
	in, camp := specs[0], specs[1]

	found, err := c.describe(ctx, adm, in.Name, camp.Name)
	if err != nil {
		return 0, err
	}
	var problems []error
	for _, s := range []Spec{in, camp} {
		if _, ok := found[s.Name]; ok {
			continue
		}
		if !createInputs {
			partitions := "--partitions N (N is the number of tasks, the unit of parallelism; " +
				"changing it later means rebuilding the pipeline's state)"
			if s.Role == RoleCampaigns {
				partitions = "--partitions 1 (every instance reads all of it)"
			}
			problems = append(problems, &TopicError{
				Topic: s.Name, Role: s.Role, Err: ErrMissingTopic,
				Fix: fmt.Sprintf("the pipeline creates its input topics only in dev mode: create it first, e.g. "+
					"kafka-topics.sh --bootstrap-server BROKER --create --topic %s %s", s.Name, partitions),
			})
			continue
		}
		t, err := c.create(ctx, adm, s)
		if err != nil {
			return 0, err
		}
		found[s.Name] = t
	}
	if len(problems) > 0 {
		return 0, errors.Join(problems...)
	}

	n := found[in.Name].partitions
	specs = c.Specs(n)
	for _, s := range specs[2:] {
		t, ok, err := c.ensureOne(ctx, adm, s)
		if err != nil {
			return 0, err
		}
		if !ok {
			continue
		}
		problems = append(problems, c.check(s, t, n)...)
	}
	if len(problems) > 0 {
		return 0, errors.Join(problems...)
	}
	return n, nil
}

// topic is what Ensure knows of an existing topic.
type topic struct {
	partitions    int32
	cleanupPolicy string // "" when not described (not needed for the role)
}

// ensureOne describes s, creating it if it is missing; ok is false if the
// topic had to be created (and so needs no check).
func (c Catalog) ensureOne(ctx context.Context, adm *kadm.Client, s Spec) (t topic, ok bool, err error) {
	found, err := c.describe(ctx, adm, s.Name)
	if err != nil {
		return topic{}, false, err
	}
	if t, ok := found[s.Name]; ok {
		return t, true, nil
	}
	t, created, err := c.createOrDescribe(ctx, adm, s)
	return t, !created, err
}

// create creates s; if another instance created it first, it is described
// instead.
func (c Catalog) create(ctx context.Context, adm *kadm.Client, s Spec) (topic, error) {
	t, _, err := c.createOrDescribe(ctx, adm, s)
	return t, err
}

func (c Catalog) createOrDescribe(ctx context.Context, adm *kadm.Client, s Spec) (t topic, created bool, err error) {
	resp, err := adm.CreateTopic(ctx, s.Partitions, s.ReplicationFactor, s.Configs, s.Name)
	switch {
	case err == nil:
		t = topic{partitions: s.Partitions}
		if resp.NumPartitions > 0 {
			t.partitions = resp.NumPartitions
		}
		if p := s.Configs["cleanup.policy"]; p != nil {
			t.cleanupPolicy = *p
		}
		return t, true, nil
	case errors.Is(err, kerr.TopicAlreadyExists):
		// Another instance won the race. Its metadata may take a moment to
		// reach the broker we ask, so wait for it to show up.
		for {
			found, err := c.describe(ctx, adm, s.Name)
			if err != nil {
				return topic{}, false, err
			}
			if t, ok := found[s.Name]; ok {
				return t, false, nil
			}
			select {
			case <-ctx.Done():
				return topic{}, false, fmt.Errorf("topic %q exists (another instance created it) but is not in the metadata yet: %w", s.Name, ctx.Err())
			case <-time.After(100 * time.Millisecond):
			}
		}
	default:
		msg := ""
		if resp.ErrMessage != "" {
			msg = " (" + resp.ErrMessage + ")"
		}
		return topic{}, false, fmt.Errorf("create %s topic %q with %d partitions, replication factor %d: %w%s",
			s.Role, s.Name, s.Partitions, s.ReplicationFactor, err, msg)
	}
}

// describe returns the topics of names that exist, with their partition
// counts and, for the changelog, cleanup policy.
func (c Catalog) describe(ctx context.Context, adm *kadm.Client, names ...string) (map[string]topic, error) {
	// kgo answers kadm's metadata requests from a cache (MetadataMinAge, 5s
	// by default) that also remembers topics as unknown, so a topic another
	// instance (or our own earlier call) just created would look missing.
	// Asking for authorized operations is kadm's documented way to send a
	// fresh metadata request instead.
	details, err := adm.ListTopics(kadm.WithAuthorizedOps(ctx), names...)
	if err != nil {
		return nil, fmt.Errorf("describe topics %s: %w", strings.Join(names, ", "), err)
	}
	found := make(map[string]topic, len(names))
	for _, name := range names {
		d, ok := details[name]
		if !ok || errors.Is(d.Err, kerr.UnknownTopicOrPartition) {
			continue
		}
		if d.Err != nil {
			return nil, fmt.Errorf("describe topic %q: %w", name, d.Err)
		}
		found[name] = topic{partitions: int32(len(d.Partitions))}
	}
	if t, ok := found[c.Names.Changelog]; ok {
		rcs, err := adm.DescribeTopicConfigs(ctx, c.Names.Changelog)
		if err != nil {
			return nil, fmt.Errorf("describe configs of topic %q: %w", c.Names.Changelog, err)
		}
		rc, err := rcs.On(c.Names.Changelog, nil)
		if err != nil {
			return nil, fmt.Errorf("describe configs of topic %q: %w", c.Names.Changelog, err)
		}
		if rc.Err != nil {
			return nil, fmt.Errorf("describe configs of topic %q: %w", c.Names.Changelog, rc.Err)
		}
		t.cleanupPolicy = "delete" // Kafka's default, if the broker does not say
		for _, cfg := range rc.Configs {
			if cfg.Key == "cleanup.policy" && cfg.Value != nil {
				t.cleanupPolicy = *cfg.Value
			}
		}
		found[c.Names.Changelog] = t
	}
	return found, nil
}

// check returns what is wrong with the existing topic t of spec s, given the
// interactions' partition count n.
func (c Catalog) check(s Spec, t topic, n int32) []error {
	var problems []error
	switch s.Role {
	case RoleInbox, RoleDecisions:
		if t.partitions != n {
			problems = append(problems, &TopicError{
				Topic: s.Name, Role: s.Role, Err: ErrCoPartitioning,
				Detail: fmt.Sprintf("it has %d partitions and %s has %d", t.partitions, c.Names.Interactions, n),
				Fix: fmt.Sprintf("%s is keyed by user like %s, and task p writes the users of %s partition p to its partition p, "+
					"so both need the same partition count; %s", s.Name, c.Names.Interactions, c.Names.Interactions, repartitionFix(s.Name, t.partitions, n)),
			})
		}
	case RoleChangelog:
		if t.partitions != n {
			problems = append(problems, &TopicError{
				Topic: s.Name, Role: s.Role, Err: ErrCoPartitioning,
				Detail: fmt.Sprintf("it has %d partitions and %s has %d", t.partitions, c.Names.Interactions, n),
				Fix: fmt.Sprintf("partition p of the changelog holds the state of the users of %s partition p; "+
					"if %s was repartitioned, that state is keyed for the old partitioning: stop every instance, "+
					"delete the changelog (kafka-topics.sh --bootstrap-server BROKER --delete --topic %s) and the state dirs, "+
					"and restart to rebuild the state by replaying %s from the start, or run under a new group name "+
					"(which uses a new changelog)", c.Names.Interactions, c.Names.Interactions, s.Name, c.Names.Interactions),
			})
		}
		if !isCompactOnly(t.cleanupPolicy) {
			problems = append(problems, &TopicError{
				Topic: s.Name, Role: s.Role, Err: ErrNotCompacted,
				Detail: fmt.Sprintf("its cleanup.policy is %q", t.cleanupPolicy),
				Fix: fmt.Sprintf("the changelog is the truth the state is rebuilt from; with deletion, state older than its retention "+
					"would be lost on the next restore: kafka-configs.sh --bootstrap-server BROKER --alter --entity-type topics "+
					"--entity-name %s --add-config cleanup.policy=compact", s.Name),
			})
		}
	}
	return problems
}

func isCompactOnly(policy string) bool {
	parts := strings.Split(policy, ",")
	for i := range parts {
		parts[i] = strings.TrimSpace(parts[i])
	}
	return slices.Equal(parts, []string{"compact"})
}

func repartitionFix(name string, have, want int32) string {
	if have < want {
		return fmt.Sprintf("if no consumer of %s depends on where its existing records are, add partitions: "+
			"kafka-topics.sh --bootstrap-server BROKER --alter --topic %s --partitions %d; otherwise delete and recreate it, "+
			"or run with a new topic prefix", name, name, want)
	}
	return fmt.Sprintf("Kafka cannot remove partitions: delete %s and let the pipeline recreate it "+
		"(kafka-topics.sh --bootstrap-server BROKER --delete --topic %s), or run with a new topic prefix", name, name)
}
