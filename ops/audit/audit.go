// Package audit answers questions about what the pipeline decided, from the
// decisions topic (one record per chunk of a campaign's fan-out on a
// partition, holding every candidate's outcome, written in the transaction
// that made the decisions; or, in a topic written before version 2 of its
// schema, one record per (campaign, user) candidate) and the inbox: per-campaign totals
// ([CampaignReport]) and why one user did or did not get one campaign
// ([Explain]). It reads with read_committed, as a downstream consumer does,
// up to each partition's last stable offset as of the call.
package audit

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sr"

	"github.com/sponsored/sponsor/kafkaconn"
	"github.com/sponsored/sponsor/policy"
	"github.com/sponsored/sponsor/schemas"
	"github.com/sponsored/sponsor/schemas/wire"
	"github.com/sponsored/sponsor/state"
	"github.com/sponsored/sponsor/topics"
)

// Config says where the pipeline's topics are.
type Config struct {
	// Brokers are the Kafka seed brokers. Required.
	Brokers []string
	// Registry is the schema registry URL. Required.
	Registry string
	// Names are the pipeline's topic names (topics.NewNames(prefix, group)).
	Names topics.Names
	// ClientOpts are extra franz-go options for every client (TLS, SASL),
	// e.g. from kafkaconn.Security.KafkaOpts.
	ClientOpts []kgo.Opt
	// RegistryOpts are extra options of the schema registry client (basic
	// auth, bearer token, TLS), e.g. from kafkaconn.Security.RegistryOpts.
	RegistryOpts []sr.ClientOpt
	// Partitioner is the pipeline's partitioner (its Config.Partitioner):
	// Explain looks for a user's records on the partition it gives. Default
	// topics.DefaultPartitioner.
	Partitioner topics.Partitioner
}

// Counts are decisions per outcome, indexed by schemas.Outcome.
type Counts [len(schemas.Outcomes)]int64

// Suppressed is the number of candidates not delivered.
func (c *Counts) Suppressed() int64 {
	var n int64
	for o, k := range c {
		if schemas.Outcome(o) != schemas.Delivered {
			n += k
		}
	}
	return n
}

// Map returns the non-zero counts by outcome name.
func (c *Counts) Map() map[string]int64 {
	m := map[string]int64{}
	for o, k := range c {
		if k > 0 {
			m[schemas.Outcome(o).String()] = k
		}
	}
	return m
}

// Report is the totals of one campaign's decisions.
type Report struct {
	Campaign    string
	Business    string    // "" if no decision was found
	DecidedAsOf time.Time // the send time it fired as of
	// Partitions holds the counts of each partition that has decisions
	// about the campaign.
	Partitions map[int32]*Counts
	// Total is the sum over the partitions.
	Total Counts
	// InboxRecords counts the campaign's records in the inbox, when the
	// report was asked to check it (-1 otherwise): it must equal
	// Total[Delivered].
	InboxRecords int64
	// Decisions is the number of decision records read, of every campaign.
	Decisions int64
}

// CampaignReport reads every decision and sums those of campaign by
// partition and outcome. With checkInbox it also counts the campaign's inbox
// records, so that the report shows whether the audit trail and the inbox
// agree.
func CampaignReport(ctx context.Context, cfg Config, campaign string, checkInbox bool) (*Report, error) {
	r, err := newReader(ctx, cfg)
	if err != nil {
		return nil, err
	}
	defer r.close()
	rep := &Report{Campaign: campaign, Partitions: map[int32]*Counts{}, InboxRecords: -1}
	err = r.scan(ctx, cfg.Names.Decisions, nil, func(rec *kgo.Record) error {
		rep.Decisions++
		return eachDecision(r.serde, rec, campaign, func(d *schemas.Decision, _ bool) {
			c := rep.Partitions[rec.Partition]
			if c == nil {
				c = new(Counts)
				rep.Partitions[rec.Partition] = c
			}
			c[d.Outcome]++
			rep.Total[d.Outcome]++
			rep.Business, rep.DecidedAsOf = d.BusinessID, d.DecidedAsOf
		})
	})
	if err != nil {
		return nil, err
	}
	if checkInbox {
		rep.InboxRecords = 0
		err = r.scan(ctx, cfg.Names.Inbox, nil, func(rec *kgo.Record) error {
			m, err := r.serde.DecodeInbox(rec.Value)
			if err != nil {
				return fmt.Errorf("inbox record at %s/%d@%d: %w", rec.Topic, rec.Partition, rec.Offset, err)
			}
			if m.CampaignID == campaign {
				rep.InboxRecords++
			}
			return nil
		})
		if err != nil {
			return nil, err
		}
	}
	return rep, nil
}

// eachDecision calls fn with each decision of the decisions record rec, in
// either form, about campaign ("" for all), and whether it came from a
// chunk. A chunk of another campaign is skipped without expanding it.
func eachDecision(serde *wire.Serde, rec *kgo.Record, campaign string, fn func(d *schemas.Decision, chunk bool)) error {
	c, chunk, err := serde.DecodeDecisionChunk(rec.Value)
	if err != nil {
		return fmt.Errorf("decision at %s/%d@%d: %w", rec.Topic, rec.Partition, rec.Offset, err)
	}
	if chunk && campaign != "" && c.CampaignID != campaign {
		return nil
	}
	var ds []schemas.Decision
	if chunk {
		ds = c.Decisions(nil)
	} else if ds, err = serde.DecodeDecisions(nil, rec.Value); err != nil {
		return fmt.Errorf("decision at %s/%d@%d: %w", rec.Topic, rec.Partition, rec.Offset, err)
	}
	for i := range ds {
		if campaign == "" || ds[i].CampaignID == campaign {
			fn(&ds[i], chunk)
		}
	}
	return nil
}

// SortedPartitions returns the report's partitions in order.
func (r *Report) SortedPartitions() []int32 {
	ps := make([]int32, 0, len(r.Partitions))
	for p := range r.Partitions {
		ps = append(ps, p)
	}
	slices.Sort(ps)
	return ps
}

// Explanation says whether a user got a campaign and which rule decided.
type Explanation struct {
	Campaign, User string
	// Partition is the user's partition: where their decisions and inbox
	// records are.
	Partition int32
	// Launch is the campaign's LAUNCH record, if the campaigns topic has it.
	Launch *schemas.Campaign
	// Cancelled is true if the campaigns topic has a CANCEL for it.
	Cancelled bool
	// Decision is the pipeline's decision about the pair, if any.
	Decision *schemas.Decision
	// Inbox is where the delivery is in the inbox, if it is there.
	Inbox *InboxRef
	// OthersDecided counts the decisions about the campaign for other users
	// of the same partition: zero means the campaign has not fired there.
	OthersDecided int64
	// OthersAsOf is the time the campaign was decided as of on the
	// partition, from those decisions; zero if none.
	OthersAsOf time.Time
	// State is what the user's partition of the changelog says about the
	// campaign and the pair; nil when it could not be read (StateNote says
	// why).
	State     *PartitionState
	StateNote string
	// Verdict is one sentence for a person: delivered, or why not.
	Verdict string
	// Consistent is false when the decision and the inbox disagree (a
	// DELIVERED decision without its inbox record, or the reverse), which
	// the pipeline's transactions are there to make impossible.
	Consistent bool
}

// PartitionState is what the changelog of one partition says, read to its
// end: the task's record of a campaign, its time, and a user's contact with
// the campaign's business.
type PartitionState struct {
	// Campaign is the task's record of the campaign; nil if it has none
	// (it has not read the campaign, or forgot it long after it ended).
	Campaign *policy.Progress
	// TaskTime is the task's time: the largest event time it processed or
	// fired a campaign as of. Zero if the task never committed.
	TaskTime time.Time
	// Frontier is the task's firing frontier (policy.Meta.Frontier): a
	// campaign with no record at or below it is done there.
	Frontier policy.Key
	// Contact is the user's contact with the campaign's business; nil if
	// there is none (never, expired, or erased).
	Contact *policy.Contact
	// ErasedAt is the task time of the user's erasure while its marker is
	// kept; zero if none.
	ErasedAt time.Time
	// DeletedContact is the contact's last value before the state deleted
	// it (expiry or erasure), when Contact is nil and the changelog, not
	// compacted yet, still has that value.
	DeletedContact *policy.Contact
}

// InboxRef locates an inbox record.
type InboxRef struct {
	Partition  int32
	Offset     int64
	DeliveryID string
	SentAt     time.Time
}

// Why explains each outcome in words.
var Why = map[schemas.Outcome]string{
	schemas.Delivered:         "delivered: every rule allowed it",
	schemas.NoContact:         "not delivered (NO_CONTACT): no user-initiated interaction with the business (message, bot start, call-button click) by the send time, or the last one is older than the contact retention, or the user was erased since",
	schemas.Blocked:           "not delivered (BLOCKED): the user was blocking the business at the send time (the latest BLOCK/UNBLOCK by event time was a BLOCK)",
	schemas.OptedOut:          "not delivered (OPTED_OUT): the user had turned the business's sponsored messages off at the send time",
	schemas.NotInAudience:     "not delivered (NOT_IN_AUDIENCE): the user matched none of the campaign's audience rules (kind of interaction within the lookback)",
	schemas.ConversationGap:   "not delivered (CONVERSATION_GAP): the user wrote to the business within the conversation gap before the send time, when the business can simply reply",
	schemas.FrequencyBusiness: "not delivered (FREQUENCY_BUSINESS): the business had already delivered a sponsored message to the user in the 24 hours up to the send time",
	schemas.FrequencyUser:     "not delivered (FREQUENCY_USER): the user had already received the per-user cap of sponsored messages, across businesses, in the 24 hours up to the send time",
}

// Explain finds the decision about (campaign, user) on the user's partition
// of the decisions topic, the delivery in the same partition of the inbox,
// and the campaign on the campaigns topic, and says what happened.
func Explain(ctx context.Context, cfg Config, campaign, user string) (*Explanation, error) {
	r, err := newReader(ctx, cfg)
	if err != nil {
		return nil, err
	}
	defer r.close()
	tds, err := r.adm.ListTopics(ctx, cfg.Names.Decisions, cfg.Names.Inbox)
	if err != nil {
		return nil, fmt.Errorf("describe topics: %w", err)
	}
	for _, t := range []string{cfg.Names.Decisions, cfg.Names.Inbox} {
		if td := tds[t]; td.Err != nil || len(td.Partitions) == 0 {
			return nil, fmt.Errorf("topic %s not found (check --topic-prefix, and that the pipeline runs with --decisions): %v", t, td.Err)
		}
	}
	n := len(tds[cfg.Names.Inbox].Partitions)
	// The platform's partitioner: where the user's interactions, hence
	// their state, decisions and inbox records, are.
	p := cfg.Partitioner.Partition([]byte(user), int32(n))
	ex := &Explanation{Campaign: campaign, User: user, Partition: p, Consistent: true}

	err = r.scan(ctx, cfg.Names.Campaigns, nil, func(rec *kgo.Record) error {
		if string(rec.Key) != campaign {
			return nil
		}
		c, err := r.serde.DecodeCampaign(rec.Value)
		if err != nil {
			return nil // a bad campaign record is dead-lettered by the pipeline
		}
		switch {
		case c.CampaignID != campaign:
		case c.Action == schemas.Launch && ex.Launch == nil:
			ex.Launch = &c
		case c.Action == schemas.Cancel:
			ex.Cancelled = true
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	err = r.scan(ctx, cfg.Names.Decisions, []int32{p}, func(rec *kgo.Record) error {
		return eachDecision(r.serde, rec, campaign, func(d *schemas.Decision, chunk bool) {
			// A per-candidate record is keyed by its user; a chunk by
			// its campaign.
			if d.UserID == user && (chunk || string(rec.Key) == user) {
				ex.Decision = d
			} else {
				ex.OthersDecided++
				ex.OthersAsOf = d.DecidedAsOf
			}
		})
	})
	if err != nil {
		return nil, err
	}
	id := policy.DeliveryID(campaign, user)
	err = r.scan(ctx, cfg.Names.Inbox, []int32{p}, func(rec *kgo.Record) error {
		if string(rec.Key) != user {
			return nil
		}
		m, err := r.serde.DecodeInbox(rec.Value)
		if err != nil {
			return fmt.Errorf("inbox record at %s/%d@%d: %w", rec.Topic, rec.Partition, rec.Offset, err)
		}
		if m.DeliveryID == id && ex.Inbox == nil {
			ex.Inbox = &InboxRef{Partition: rec.Partition, Offset: rec.Offset, DeliveryID: m.DeliveryID, SentAt: m.SentAt}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	// The state explains a missing decision and a NO_CONTACT one; reading
	// it costs a scan of the partition's changelog, so only then.
	if ex.Decision == nil && ex.Launch != nil || ex.Decision != nil && ex.Decision.Outcome == schemas.NoContact {
		if err := readPartitionState(ctx, r, ex); err != nil {
			return nil, err
		}
	}
	ex.Verdict, ex.Consistent = verdict(ex)
	return ex, nil
}

// readPartitionState reads the changelog partition of the user's task for
// the campaign's record, the task's time and the user's contact. A missing
// changelog (another --group) is noted, not an error: the topics still
// explain a decision.
func readPartitionState(ctx context.Context, r *reader, ex *Explanation) error {
	changelog := r.cfg.Names.Changelog
	if changelog == "" {
		ex.StateNote = "no changelog topic named"
		return nil
	}
	tds, err := r.adm.ListTopics(ctx, changelog)
	if err != nil {
		return fmt.Errorf("describe topic %s: %w", changelog, err)
	}
	if td := tds[changelog]; td.Err != nil || int32(len(td.Partitions)) <= ex.Partition {
		ex.StateNote = fmt.Sprintf("the changelog %s was not found (check --group): the task's state is unknown", changelog)
		return nil
	}
	campKey := string(state.CampaignChangelogKey(ex.Campaign))
	metaKey := string(state.MetaChangelogKey())
	erasureKey := string(state.ErasureChangelogKey(ex.User))
	contactKey := ""
	if ex.Launch != nil {
		contactKey = string(state.ContactChangelogKey(ex.User, ex.Launch.BusinessID))
	}
	// The latest value of each key (nil: deleted), and the contact's last
	// value before a deletion.
	latest := map[string][]byte{}
	var lastContact []byte
	err = r.scan(ctx, changelog, []int32{ex.Partition}, func(rec *kgo.Record) error {
		switch k := string(rec.Key); k {
		case contactKey:
			if rec.Value != nil {
				lastContact = rec.Value
			}
			fallthrough
		case campKey, metaKey, erasureKey:
			latest[k] = rec.Value
		}
		return nil
	})
	if err != nil {
		return err
	}
	st := &PartitionState{}
	if v := latest[campKey]; v != nil {
		pr, err := state.DecodeProgress(v)
		if err != nil {
			return fmt.Errorf("changelog %s/%d: campaign %s: %w", changelog, ex.Partition, ex.Campaign, err)
		}
		st.Campaign = &pr
	}
	if v := latest[metaKey]; v != nil {
		m, err := state.DecodeMeta(v)
		if err != nil {
			return fmt.Errorf("changelog %s/%d: task metadata: %w", changelog, ex.Partition, err)
		}
		if m.Time > 0 {
			st.TaskTime = time.UnixMilli(m.Time).UTC()
		}
		st.Frontier = m.Frontier
	}
	if v := latest[erasureKey]; v != nil {
		e, err := state.DecodeErasure(v)
		if err != nil {
			return fmt.Errorf("changelog %s/%d: erasure of %s: %w", changelog, ex.Partition, ex.User, err)
		}
		st.ErasedAt = time.UnixMilli(e.At).UTC()
	}
	if v := latest[contactKey]; contactKey != "" && v != nil {
		c, err := state.DecodeContact(v)
		if err != nil {
			return fmt.Errorf("changelog %s/%d: contact %s/%s: %w", changelog, ex.Partition, ex.User, ex.Launch.BusinessID, err)
		}
		st.Contact = &c
	} else if lastContact != nil {
		c, err := state.DecodeContact(lastContact)
		if err != nil {
			return fmt.Errorf("changelog %s/%d: contact %s/%s: %w", changelog, ex.Partition, ex.User, ex.Launch.BusinessID, err)
		}
		st.DeletedContact = &c
	}
	ex.State = st
	return nil
}

func verdict(ex *Explanation) (string, bool) {
	delivered := ex.Decision != nil && ex.Decision.Outcome == schemas.Delivered
	switch {
	case delivered && ex.Inbox == nil:
		return "INCONSISTENT: the decision is DELIVERED but the inbox has no record with its delivery id (was the inbox's retention shorter than the decision's age?)", false
	case !delivered && ex.Inbox != nil:
		return fmt.Sprintf("INCONSISTENT: the inbox has the delivery (partition %d offset %d) but the decision says %s", ex.Inbox.Partition, ex.Inbox.Offset, outcomeName(ex.Decision)), false
	case ex.Decision != nil && ex.Decision.Outcome == schemas.NoContact:
		return "not delivered (NO_CONTACT): " + noContactCause(ex, ex.Decision.DecidedAsOf), true
	case ex.Decision != nil:
		return Why[ex.Decision.Outcome], true
	case ex.Launch == nil && ex.Cancelled:
		return "no such campaign: the campaigns topic has only a CANCEL for it, no LAUNCH", true
	case ex.Launch == nil:
		return "no such campaign: the campaigns topic has no LAUNCH for it (check the id and --topic-prefix)", true
	}
	st := ex.State
	if st == nil {
		// The changelog was not found: what the topics say.
		if ex.OthersDecided > 0 {
			return fmt.Sprintf("no decision about this user: the campaign fired on partition %d (%d decisions about other users), but the user was not among the business's contacts there (%s)", ex.Partition, ex.OthersDecided, ex.StateNote), true
		}
		return fmt.Sprintf("no decision on partition %d: the campaign has not fired there, or it was cancelled or expired, or the business has no contact there (%s)", ex.Partition, ex.StateNote), true
	}
	sendAt := ex.Launch.SendAt.UTC().Format(time.RFC3339)
	taskTime := "it has processed nothing yet"
	if !st.TaskTime.IsZero() {
		taskTime = "its time is " + st.TaskTime.Format(time.RFC3339)
	}
	pr := st.Campaign
	switch {
	case pr == nil && ex.OthersDecided > 0:
		// A task forgets a finished campaign once its time passes the
		// expiry; the decisions about others say it fired.
		return fmt.Sprintf("no decision about this user: the campaign FIRED on partition %d as of %s (%d decisions about other users) and the user was not a contact of business %s then: %s",
			ex.Partition, ex.OthersAsOf.UTC().Format(time.RFC3339), ex.OthersDecided, ex.Launch.BusinessID, noContactCause(ex, ex.OthersAsOf.UTC())), true
	case pr == nil && !st.TaskTime.IsZero() && st.TaskTime.After(ex.Launch.ExpiresAt) && ex.Cancelled:
		return fmt.Sprintf("no decision: the campaign was cancelled, and it decided nothing on partition %d (whose task has forgotten it since its expiry)", ex.Partition), true
	case pr == nil && !st.TaskTime.IsZero() && st.TaskTime.After(ex.Launch.ExpiresAt):
		return fmt.Sprintf("no decision: the campaign decided nothing on partition %d, whose task has forgotten it since its expiry %s: the business had no contact there when it fired, or it expired before it could fire", ex.Partition, ex.Launch.ExpiresAt.UTC().Format(time.RFC3339)), true
	case pr == nil && (policy.Key{SendAt: ex.Launch.SendAt.UnixMilli(), ID: ex.Launch.CampaignID}).Compare(st.Frontier) <= 0:
		// A campaign that fired within one transaction leaves no record,
		// only the frontier past it.
		return fmt.Sprintf("no decision: the campaign is done on partition %d (its task's firing frontier, %s %s, is past it, and it keeps no record of it): the business had no contact there when it fired, or it was cancelled or expired", ex.Partition,
			time.UnixMilli(st.Frontier.SendAt).UTC().Format(time.RFC3339), st.Frontier.ID), true
	case pr == nil:
		return fmt.Sprintf("no decision: the task of partition %d has no record of the campaign: it has not read it yet, or it is pending (a pending campaign has no record unless adopted) (the pipeline is stopped or behind on the campaigns topic); %s", ex.Partition, taskTime), true
	}
	switch pr.Status {
	case policy.Pending:
		return fmt.Sprintf("no decision yet: the campaign is PENDING on partition %d: it fires once the partition's time passes its send time %s (plus --grace), or the wall clock does while the partition has no lag; %s", ex.Partition, sendAt, taskTime), true
	case policy.Firing:
		if pr.Cursor == "" || ex.User > pr.Cursor {
			return fmt.Sprintf("no decision yet: the campaign is FIRING on partition %d, its fan-out has decided up to user %q and this user comes later", ex.Partition, pr.Cursor), true
		}
	case policy.Cancelled:
		return fmt.Sprintf("no decision: the campaign was CANCELLED on partition %d before it fired there", ex.Partition), true
	case policy.Expired:
		return fmt.Sprintf("no decision: the campaign EXPIRED on partition %d: its expiry %s passed before the partition's time reached its send time %s", ex.Partition, ex.Launch.ExpiresAt.UTC().Format(time.RFC3339), sendAt), true
	}
	// Fired (or firing past this user): the fan-out went over the business's
	// contacts on the partition and the user was not among them.
	asOf := time.UnixMilli(pr.FireAt).UTC()
	return fmt.Sprintf("no decision about this user: the campaign %s on partition %d as of %s and the user was not a contact of business %s then: %s",
		pr.Status, ex.Partition, asOf.Format(time.RFC3339), ex.Launch.BusinessID, noContactCause(ex, asOf)), true
}

// noContactCause says, from the user's contact with the business as the
// changelog has it now, why the user was no contact as of the campaign's
// firing: the one cause the state shows.
func noContactCause(ex *Explanation, asOf time.Time) string {
	st := ex.State
	if st == nil {
		return "no user-initiated interaction with the business (message, bot start, call-button click) by the send time, or the last one older than the contact retention, or the user was erased since (" + ex.StateNote + ")"
	}
	if !st.ErasedAt.IsZero() && st.Contact == nil {
		return "the user was erased (USER_ERASED, task time " + st.ErasedAt.Format(time.RFC3339) + "): the state knows nothing of them"
	}
	c := st.Contact
	if c == nil && st.DeletedContact != nil {
		last := st.DeletedContact.LastContact()
		if last == 0 {
			return "the user never had a user-initiated interaction with the business (message, bot start, call-button click); the state has deleted their other events since"
		}
		at := time.UnixMilli(last).UTC()
		return fmt.Sprintf("the contact expired: its last user-initiated interaction, at %s, was %d days before the send time, older than the contact retention", at.Format(time.RFC3339), int(asOf.Sub(at).Hours()/24))
	}
	if c == nil {
		return "the user never had a user-initiated interaction with the business (message, bot start, call-button click): the changelog has no contact between them"
	}
	if !c.HasContact() {
		return "the user never had a user-initiated interaction with the business (message, bot start, call-button click), only other events (business messages, blocks, opt-outs)"
	}
	// c.Last has the latest of each kind: a kind whose latest is before the
	// send time had none after it, so the latest before it is known.
	var before time.Time
	for _, at := range c.Last {
		if t := time.UnixMilli(at).UTC(); at > 0 && !t.After(asOf) && t.After(before) {
			before = t
		}
	}
	if before.IsZero() {
		return fmt.Sprintf("the user's user-initiated interactions with the business all came after the send time (the latest at %s)", time.UnixMilli(c.LastContact()).UTC().Format(time.RFC3339))
	}
	days := int(asOf.Sub(before).Hours() / 24)
	if days >= 365 {
		return fmt.Sprintf("the user's last user-initiated interaction with the business before the send time, at %s, was %d days before it: older than the contact retention (365 days by default)",
			before.Format(time.RFC3339), days)
	}
	return fmt.Sprintf("the user's last user-initiated interaction with the business before the send time, at %s (%d days before it), reached the pipeline after the campaign fired (a late event, past --grace), or the pipeline's contact retention is shorter than %d days",
		before.Format(time.RFC3339), days, days)
}

func outcomeName(d *schemas.Decision) string {
	if d == nil {
		return "nothing (no decision)"
	}
	return d.Outcome.String()
}

// reader reads topics whole, read_committed.
type reader struct {
	cfg   Config
	cl    *kgo.Client
	adm   *kadm.Client
	rc    *sr.Client
	serde *wire.Serde
}

func newReader(ctx context.Context, cfg Config) (*reader, error) {
	if len(cfg.Brokers) == 0 || cfg.Registry == "" {
		return nil, errors.New("audit: brokers and registry are required")
	}
	if cfg.Names.Decisions == "" {
		return nil, errors.New("audit: no decisions topic name")
	}
	rc, err := sr.NewClient(append([]sr.ClientOpt{sr.URLs(cfg.Registry)}, cfg.RegistryOpts...)...)
	if err != nil {
		return nil, fmt.Errorf("schema registry %s: %w", cfg.Registry, err)
	}
	serde, err := wire.New(ctx, rc, wire.Topics{Interactions: cfg.Names.Interactions, Campaigns: cfg.Names.Campaigns, Inbox: cfg.Names.Inbox, Decisions: cfg.Names.Decisions})
	if err != nil {
		return nil, err
	}
	cl, err := kgo.NewClient(append(append([]kgo.Opt{}, cfg.ClientOpts...), kgo.SeedBrokers(cfg.Brokers...))...)
	if err != nil {
		return nil, err
	}
	return &reader{cfg: cfg, cl: cl, adm: kadm.NewClient(cl), rc: rc, serde: serde}, nil
}

func (r *reader) close() { r.cl.Close() }

// scan calls fn for every committed record of topic (of the listed
// partitions; nil: all), from the start to the last stable offsets of the
// moment it starts.
func (r *reader) scan(ctx context.Context, topic string, partitions []int32, fn func(*kgo.Record) error) error {
	err := kafkaconn.ReadCommitted(ctx, append(append([]kgo.Opt{}, r.cfg.ClientOpts...), kgo.SeedBrokers(r.cfg.Brokers...)), topic, partitions, fn)
	if ut, ok := errors.AsType[*kafkaconn.UnknownTopicError](err); ok {
		return fmt.Errorf("%w (check --topic-prefix)", ut)
	}
	return err
}

// Difference is one (campaign, user) pair on which two runs disagree.
type Difference struct {
	Campaign, User string
	// Real and Shadow are the outcomes ("" when the run has no decision
	// about the pair); from the inboxes, DELIVERED or "".
	Real, Shadow string
}

// DiffReport compares the deliveries (and, when both runs wrote them, the
// decisions) of the real pipeline and a shadow run.
type DiffReport struct {
	// RealInbox, ShadowInbox: records read from each inbox.
	RealInbox, ShadowInbox int64
	// Both: deliveries in both inboxes; OnlyReal, OnlyShadow: in one.
	Both                 int64
	OnlyReal, OnlyShadow []Difference
	// Changed: pairs both runs decided, with different outcomes, by
	// "REAL->SHADOW" outcome names; empty when a run wrote no decisions.
	Changed map[string]int64
	// Examples of Changed, a few per kind.
	ChangedExamples []Difference
	// Decisions is false when either decisions topic was empty or missing.
	Decisions bool
}

// Same reports whether the two runs delivered the same messages and, when
// decisions were compared, decided the same.
func (d *DiffReport) Same() bool {
	return len(d.OnlyReal) == 0 && len(d.OnlyShadow) == 0 && len(d.Changed) == 0
}

// Diff compares the inbox (and decisions) of the pipeline named by
// cfg.Names with those of a shadow run (shadow: topics.Run.Names),
// optionally for one campaign ("" = all). Both are read whole, with
// read_committed.
func Diff(ctx context.Context, cfg Config, shadow topics.Names, campaign string) (*DiffReport, error) {
	r, err := newReader(ctx, cfg)
	if err != nil {
		return nil, err
	}
	defer r.close()
	sr := *r
	ss, err := wire.New(ctx, r.rc, wire.Topics{Interactions: shadow.Interactions, Campaigns: shadow.Campaigns, Inbox: shadow.Inbox, Decisions: shadow.Decisions})
	if err != nil {
		return nil, err
	}
	sr.serde = ss
	type pair struct{ c, u string }
	inbox := func(rd *reader, topic string, n *int64) (map[pair]bool, error) {
		out := map[pair]bool{}
		err := rd.scan(ctx, topic, nil, func(rec *kgo.Record) error {
			m, err := rd.serde.DecodeInbox(rec.Value)
			if err != nil {
				return fmt.Errorf("inbox record at %s/%d@%d: %w", rec.Topic, rec.Partition, rec.Offset, err)
			}
			if campaign == "" || m.CampaignID == campaign {
				*n++
				out[pair{m.CampaignID, m.UserID}] = true
			}
			return nil
		})
		return out, err
	}
	decisions := func(rd *reader, topic string) (map[pair]schemas.Outcome, error) {
		out := map[pair]schemas.Outcome{}
		err := rd.scan(ctx, topic, nil, func(rec *kgo.Record) error {
			return eachDecision(rd.serde, rec, campaign, func(d *schemas.Decision, _ bool) {
				out[pair{d.CampaignID, d.UserID}] = d.Outcome
			})
		})
		return out, err
	}
	rep := &DiffReport{Changed: map[string]int64{}}
	real, err := inbox(r, cfg.Names.Inbox, &rep.RealInbox)
	if err != nil {
		return nil, err
	}
	shadowed, err := inbox(&sr, shadow.Inbox, &rep.ShadowInbox)
	if err != nil {
		return nil, err
	}
	for k := range real {
		if shadowed[k] {
			rep.Both++
		} else {
			rep.OnlyReal = append(rep.OnlyReal, Difference{Campaign: k.c, User: k.u, Real: "DELIVERED"})
		}
	}
	for k := range shadowed {
		if !real[k] {
			rep.OnlyShadow = append(rep.OnlyShadow, Difference{Campaign: k.c, User: k.u, Shadow: "DELIVERED"})
		}
	}
	rd, rerr := decisions(r, cfg.Names.Decisions)
	sd, serr := decisions(&sr, shadow.Decisions)
	if rerr == nil && serr == nil && len(rd) > 0 && len(sd) > 0 {
		rep.Decisions = true
		name := func(o schemas.Outcome, ok bool) string {
			if !ok {
				return "none"
			}
			return o.String()
		}
		perKind := map[string]int{}
		keys := map[pair]bool{}
		for k := range rd {
			keys[k] = true
		}
		for k := range sd {
			keys[k] = true
		}
		for k := range keys {
			ro, rok := rd[k]
			so, sok := sd[k]
			if rok == sok && ro == so {
				continue
			}
			kind := name(ro, rok) + "->" + name(so, sok)
			rep.Changed[kind]++
			if perKind[kind] < 3 {
				perKind[kind]++
				rep.ChangedExamples = append(rep.ChangedExamples, Difference{Campaign: k.c, User: k.u, Real: name(ro, rok), Shadow: name(so, sok)})
			}
		}
	}
	order := func(a, b Difference) int {
		if a.Campaign != b.Campaign {
			return strings.Compare(a.Campaign, b.Campaign)
		}
		return strings.Compare(a.User, b.User)
	}
	slices.SortFunc(rep.OnlyReal, order)
	slices.SortFunc(rep.OnlyShadow, order)
	slices.SortFunc(rep.ChangedExamples, order)
	return rep, nil
}

// GroupLag returns, per partition of cfg.Names.Interactions, how many
// interactions group has not processed yet: the partition's last stable
// offset minus the group's committed offset (minus its start offset when the
// group committed none there). A run whose lag is not zero everywhere has
// not decided everything its inputs hold: a Diff taken then is partial.
func GroupLag(ctx context.Context, cfg Config, group string) (map[int32]int64, error) {
	cl, err := kgo.NewClient(append(append([]kgo.Opt{}, cfg.ClientOpts...), kgo.SeedBrokers(cfg.Brokers...))...)
	if err != nil {
		return nil, err
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	topic := cfg.Names.Interactions
	ends, err := adm.ListCommittedOffsets(ctx, topic)
	if err == nil {
		err = ends.Error()
	}
	if err != nil {
		return nil, fmt.Errorf("end offsets of %s: %w", topic, err)
	}
	starts, err := adm.ListStartOffsets(ctx, topic)
	if err != nil {
		return nil, fmt.Errorf("start offsets of %s: %w", topic, err)
	}
	committed, err := adm.FetchOffsets(ctx, group)
	if err != nil && !errors.Is(err, kerr.GroupIDNotFound) {
		return nil, fmt.Errorf("offsets of group %s: %w", group, err)
	}
	lag := map[int32]int64{}
	ends.Each(func(e kadm.ListedOffset) {
		from := int64(0)
		if s, ok := starts.Lookup(topic, e.Partition); ok {
			from = s.Offset
		}
		if o, ok := committed.Lookup(topic, e.Partition); ok && o.Err == nil && o.At >= 0 {
			from = max(from, o.At)
		}
		lag[e.Partition] = max(0, e.Offset-from)
	})
	return lag, nil
}
