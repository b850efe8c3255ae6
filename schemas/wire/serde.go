package wire

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/twmb/avro"
	"github.com/twmb/franz-go/pkg/sr"

	"github.com/sponsored/sponsor/deadletter"
	"github.com/sponsored/sponsor/schemas"
)

// Our reader (and writer) schemas. The .avsc files are part of the binary, so
// a parse failure is a build defect, caught by the package's tests.
var (
	interactionReader = mustParse("interaction.avsc", schemas.InteractionSchema())
	campaignReader    = mustParse("campaign.avsc", schemas.CampaignSchema())
	inboxReader       = mustParse("inbox.avsc", schemas.InboxSchema())
	decisionReader    = mustParse("decision.avsc", schemas.DecisionSchema())
)

func mustParse(file, text string) *avro.Schema {
	s, err := avro.Parse(text)
	if err != nil {
		panic(fmt.Sprintf("wire: embedded %s: %v", file, err))
	}
	return s
}

// DecodeError says why a record value cannot be accepted. It is a property of
// the record (or of its writer schema), so retrying cannot help: the record
// belongs in the dead-letter topic. Errors of the registry itself are never
// DecodeErrors.
type DecodeError struct {
	// Reason is one of the decoder's reasons: deadletter.ReasonNotWireFormat,
	// ReasonUnknownSchema, ReasonIncompatibleSchema, ReasonMalformed or
	// ReasonInvalidValue.
	Reason deadletter.Reason
	// SchemaID is the writer schema id in the record's header, or -1 if the
	// header could not be read (Reason is deadletter.ReasonNotWireFormat).
	SchemaID int
	// Err is the underlying cause.
	Err error
}

// Error implements error.
func (e *DecodeError) Error() string {
	if e.Reason == deadletter.ReasonNotWireFormat {
		return fmt.Sprintf("schemas: %s: %v", e.Reason, e.Err)
	}
	return fmt.Sprintf("schemas: %s (schema id %d): %v", e.Reason, e.SchemaID, e.Err)
}

// Unwrap returns the underlying cause.
func (e *DecodeError) Unwrap() error { return e.Err }

// Topics names the topics whose values a [Serde] handles. A topic name prefix
// may change them from the defaults "interactions", "campaigns", "inbox".
// Decisions is optional: empty, the Serde handles no decision records.
type Topics struct {
	Interactions, Campaigns, Inbox string
	Decisions                      string
}

func (t Topics) validate() error {
	names := map[string]string{}
	for _, f := range []struct{ field, name string }{
		{"Interactions", t.Interactions},
		{"Campaigns", t.Campaigns},
		{"Inbox", t.Inbox},
		{"Decisions", t.Decisions},
	} {
		if f.name == "" && f.field == "Decisions" {
			continue
		}
		if f.name == "" {
			return fmt.Errorf("schemas: Topics.%s is empty", f.field)
		}
		if other, ok := names[f.name]; ok {
			return fmt.Errorf("schemas: Topics.%s and Topics.%s are both %q", other, f.field, f.name)
		}
		names[f.name] = f.field
	}
	return nil
}

// Subject returns the registry subject of a topic's values (the
// TopicNameStrategy): topic+"-value".
func Subject(topic string) string { return topic + "-value" }

// headerLen is the size of the Confluent wire-format header: the magic byte
// and the big-endian schema id.
const headerLen = 5

// lookupTimeout bounds one registry look-up of an unknown schema id made while
// decoding (the Decode methods take no context).
const lookupTimeout = 10 * time.Second

// Serde encodes and decodes the values of the interactions, campaigns and
// inbox topics in the Confluent wire format. It is safe for concurrent use.
//
// Writer schemas are looked up by id in the registry the first time a record
// names them and cached for the Serde's lifetime, rejections included (a
// schema id never changes its schema). Ids the registry does not know are not
// cached, so a schema registered later is still found.
type Serde struct {
	interaction, campaign, inbox *recordSerde
	decision                     *recordSerde // nil without Topics.Decisions
}

// New registers our three schemas under the subjects of topics (see
// [Subject]) and returns a Serde that writes with their ids. Registering is
// idempotent: a schema the subject already has keeps its id. It fails if the
// registry cannot be reached or refuses a schema (for instance because the
// subject's compatibility rules reject it).
func New(ctx context.Context, rc *sr.Client, topics Topics) (*Serde, error) {
	if rc == nil {
		return nil, errors.New("schemas: NewSerde: nil registry client")
	}
	if err := topics.validate(); err != nil {
		return nil, err
	}
	var (
		s   Serde
		err error
	)
	if s.interaction, err = newRecordSerde(ctx, rc, topics.Interactions, schemas.InteractionSchema(), interactionReader); err != nil {
		return nil, err
	}
	if s.campaign, err = newRecordSerde(ctx, rc, topics.Campaigns, schemas.CampaignSchema(), campaignReader); err != nil {
		return nil, err
	}
	if s.inbox, err = newRecordSerde(ctx, rc, topics.Inbox, schemas.InboxSchema(), inboxReader); err != nil {
		return nil, err
	}
	if topics.Decisions != "" {
		if s.decision, err = newRecordSerde(ctx, rc, topics.Decisions, schemas.DecisionSchema(), decisionReader); err != nil {
			return nil, err
		}
	}
	return &s, nil
}

// DecodeInteraction decodes a value of the interactions topic. A record that
// cannot be accepted gives a [*DecodeError]; any other error means the
// registry could not be asked and the record should be retried.
func (s *Serde) DecodeInteraction(b []byte) (schemas.Interaction, error) {
	v, _, err := s.decodeInteraction(b)
	return v, err
}

// decodeInteraction is DecodeInteraction; fast says whether the fast decoder
// read the record (fast.go).
func (s *Serde) decodeInteraction(b []byte) (v schemas.Interaction, fast bool, err error) {
	if body, ok := s.interaction.own(b); ok {
		if v, ok := decodeOwnInteraction(body); ok {
			return v, true, nil
		}
	}
	if err := s.interaction.decode(b, (*wireInteraction)(&v)); err != nil {
		return schemas.Interaction{}, false, err
	}
	return v, false, nil
}

// DecodeCampaign decodes a value of the campaigns topic; errors as for
// [Serde.DecodeInteraction]. An empty audience decodes as nil.
func (s *Serde) DecodeCampaign(b []byte) (schemas.Campaign, error) {
	var w wireCampaign
	if err := s.campaign.decode(b, &w); err != nil {
		return schemas.Campaign{}, err
	}
	v := schemas.Campaign{
		CampaignID: w.CampaignID,
		BusinessID: w.BusinessID,
		Action:     w.Action,
		SendAt:     w.SendAt,
		ExpiresAt:  w.ExpiresAt,
		Message:    schemas.Message(w.Message),
	}
	if len(w.Audience) > 0 {
		v.Audience = make([]schemas.AudienceRule, len(w.Audience))
		for i, r := range w.Audience {
			if int(r.Kind) < 0 || int(r.Kind) >= len(contactKinds) {
				return schemas.Campaign{}, s.campaign.invalid(b, fmt.Errorf("audience[%d]: contact kind ordinal %d out of range", i, r.Kind))
			}
			if r.WithinDays < 0 {
				return schemas.Campaign{}, s.campaign.invalid(b, fmt.Errorf("audience[%d]: negative within_days %d", i, r.WithinDays))
			}
			v.Audience[i] = schemas.AudienceRule{Kind: contactKinds[r.Kind], WithinDays: r.WithinDays}
		}
	}
	return v, nil
}

// DecodeInbox decodes a value of the inbox topic; errors as for
// [Serde.DecodeInteraction].
func (s *Serde) DecodeInbox(b []byte) (schemas.InboxMessage, error) {
	var w wireInbox
	if err := s.inbox.decode(b, &w); err != nil {
		return schemas.InboxMessage{}, err
	}
	return schemas.InboxMessage{
		DeliveryID: w.DeliveryID,
		UserID:     w.UserID,
		BusinessID: w.BusinessID,
		CampaignID: w.CampaignID,
		SentAt:     w.SentAt,
		Message:    schemas.Message(w.Message),
	}, nil
}

// AppendInteraction appends v in the wire format, with our schema's id, to
// dst and returns the extended slice. Timestamps keep millisecond precision
// (finer parts are dropped). On error it returns dst unchanged.
func (s *Serde) AppendInteraction(dst []byte, v *schemas.Interaction) ([]byte, error) {
	return s.interaction.append(dst, (*wireInteraction)(v))
}

// AppendCampaign appends v in the wire format, with our schema's id, to dst
// and returns the extended slice. Every audience rule's kind must be
// user-initiated and its WithinDays not negative. On error it returns dst unchanged.
func (s *Serde) AppendCampaign(dst []byte, v *schemas.Campaign) ([]byte, error) {
	w := wireCampaign{
		CampaignID: v.CampaignID,
		BusinessID: v.BusinessID,
		Action:     v.Action,
		SendAt:     v.SendAt,
		ExpiresAt:  v.ExpiresAt,
		Audience:   make([]wireAudienceRule, len(v.Audience)),
		Message:    wireMessage(v.Message),
	}
	for i, r := range v.Audience {
		if !r.Kind.UserInitiated() {
			return dst, fmt.Errorf("schemas: encode campaign %q: audience[%d]: kind %v is not user-initiated", v.CampaignID, i, r.Kind)
		}
		if r.WithinDays < 0 {
			return dst, fmt.Errorf("schemas: encode campaign %q: audience[%d]: negative within_days %d", v.CampaignID, i, r.WithinDays)
		}
		// contactKinds[k] == k for the user-initiated kinds.
		w.Audience[i] = wireAudienceRule{Kind: int8(r.Kind), WithinDays: r.WithinDays}
	}
	return s.campaign.append(dst, &w)
}

// AppendInbox appends v in the wire format, with our schema's id, to dst and
// returns the extended slice. On error it returns dst unchanged.
func (s *Serde) AppendInbox(dst []byte, v *schemas.InboxMessage) ([]byte, error) {
	w := wireInbox{
		DeliveryID: v.DeliveryID,
		UserID:     v.UserID,
		BusinessID: v.BusinessID,
		CampaignID: v.CampaignID,
		SentAt:     v.SentAt,
		Message:    wireMessage(v.Message),
	}
	return s.inbox.append(dst, &w)
}

// errNoDecisions is the error of the decision methods of a Serde made without
// Topics.Decisions.
var errNoDecisions = errors.New("schemas: this Serde has no decisions topic (Topics.Decisions is empty)")

// AppendDecision appends v, a decision in the per-candidate form (the form
// of the decisions subject's version 1, which the pipeline no longer writes:
// for tests and tools that make such records), in the wire format, with our
// schema's id, to dst and returns the extended slice. On error it returns dst
// unchanged.
func (s *Serde) AppendDecision(dst []byte, v *schemas.Decision) ([]byte, error) {
	if s.decision == nil {
		return dst, errNoDecisions
	}
	w := wireDecision{
		DeliveryID:  v.DeliveryID,
		UserID:      v.UserID,
		BusinessID:  v.BusinessID,
		CampaignID:  v.CampaignID,
		Outcome:     v.Outcome,
		DecidedAsOf: v.DecidedAsOf,
		Partition:   -1,
	}
	return s.decision.append(dst, &w)
}

// AppendDecisionChunk appends v, the decisions of one fan-out chunk, in the
// wire format, with our schema's id, to dst and returns the extended slice.
// v must have as many outcomes as users, and at least one of each (a chunk
// without candidates has no record). On error it returns dst unchanged.
func (s *Serde) AppendDecisionChunk(dst []byte, v *schemas.DecisionChunk) ([]byte, error) {
	if s.decision == nil {
		return dst, errNoDecisions
	}
	if len(v.Users) != len(v.Outcomes) {
		return dst, fmt.Errorf("schemas: encode decision chunk of %q: %d users but %d outcomes", v.CampaignID, len(v.Users), len(v.Outcomes))
	}
	w := wireDecision{
		BusinessID:  v.BusinessID,
		CampaignID:  v.CampaignID,
		DecidedAsOf: v.DecidedAsOf,
		Partition:   v.Partition,
		After:       v.After,
		Done:        v.Done,
		Users:       v.Users,
		Outcomes:    v.Outcomes,
	}
	if w.Users == nil {
		w.Users, w.Outcomes = []string{}, []schemas.Outcome{}
	}
	return s.decision.append(dst, &w)
}

// DecodeDecisions decodes a value of the decisions topic, in either form,
// and appends its decisions in the per-candidate form to dst: one for a
// per-candidate record, one per candidate of a chunk (with the delivery ids
// derived from the pairs). Errors as for [Serde.DecodeInteraction]; a chunk
// whose users and outcomes differ in number is a ReasonInvalidValue.
func (s *Serde) DecodeDecisions(dst []schemas.Decision, b []byte) ([]schemas.Decision, error) {
	c, chunk, one, err := s.decodeDecision(b)
	if err != nil {
		return dst, err
	}
	if !chunk {
		return append(dst, one), nil
	}
	return c.Decisions(dst), nil
}

// DecodeDecisionChunk decodes a value of the decisions topic and returns it
// as a chunk; chunk is false for a record of the per-candidate form (which
// [Serde.DecodeDecisions] reads). Errors as for [Serde.DecodeDecisions].
func (s *Serde) DecodeDecisionChunk(b []byte) (c schemas.DecisionChunk, chunk bool, err error) {
	c, chunk, _, err = s.decodeDecision(b)
	return c, chunk, err
}

// decodeDecision decodes b into the chunk form when its users are not empty
// (chunk true) and into the per-candidate form otherwise.
func (s *Serde) decodeDecision(b []byte) (c schemas.DecisionChunk, chunk bool, one schemas.Decision, err error) {
	if s.decision == nil {
		return c, false, one, errNoDecisions
	}
	var w wireDecision
	if err := s.decision.decode(b, &w); err != nil {
		return c, false, one, err
	}
	if len(w.Users) == 0 {
		if len(w.Outcomes) > 0 {
			return c, false, one, s.decision.invalid(b, fmt.Errorf("%d outcomes but no users", len(w.Outcomes)))
		}
		return c, false, schemas.Decision{
			DeliveryID:  w.DeliveryID,
			UserID:      w.UserID,
			BusinessID:  w.BusinessID,
			CampaignID:  w.CampaignID,
			Outcome:     w.Outcome,
			DecidedAsOf: w.DecidedAsOf,
		}, nil
	}
	if len(w.Users) != len(w.Outcomes) {
		return c, false, one, s.decision.invalid(b, fmt.Errorf("chunk of %d users but %d outcomes", len(w.Users), len(w.Outcomes)))
	}
	return schemas.DecisionChunk{
		BusinessID:  w.BusinessID,
		CampaignID:  w.CampaignID,
		DecidedAsOf: w.DecidedAsOf,
		Partition:   w.Partition,
		After:       w.After,
		Done:        w.Done,
		Users:       w.Users,
		Outcomes:    w.Outcomes,
	}, true, one, nil
}

// The wire structs map our types onto the Avro field names. twmb/avro
// decodes straight into them (no map[string]any per record), resolving the
// writer schema against ours on the way; enums travel as the reader's
// ordinals, which are our Go values. Decoding an interaction costs one
// allocation (its strings). Interactions written with our own schema, and the
// inbox records and decisions of a fan-out, take the faster paths of fast.go.
//
// wireInteraction must keep schemas.Interaction's exact field list: the serde
// converts pointers between the two.
type wireInteraction struct {
	EventID    string                  `avro:"event_id"`
	UserID     string                  `avro:"user_id"`
	BusinessID string                  `avro:"business_id"`
	Kind       schemas.InteractionKind `avro:"kind"`
	OccurredAt time.Time               `avro:"occurred_at"`
}

type wireMessage struct {
	Text     string  `avro:"text"`
	CTALabel *string `avro:"cta_label"`
	CTAURL   *string `avro:"cta_url"`
}

// wireAudienceRule's Kind is the ordinal of the ContactKind enum.
type wireAudienceRule struct {
	Kind       int8  `avro:"kind"`
	WithinDays int32 `avro:"within_days"`
}

// contactKinds maps the ContactKind symbols' ordinals to interaction kinds.
var contactKinds = [...]schemas.InteractionKind{schemas.UserMessage, schemas.BotStarted, schemas.BotCTAClick}

type wireCampaign struct {
	CampaignID string                 `avro:"campaign_id"`
	BusinessID string                 `avro:"business_id"`
	Action     schemas.CampaignAction `avro:"action"`
	SendAt     time.Time              `avro:"send_at"`
	ExpiresAt  time.Time              `avro:"expires_at"`
	Audience   []wireAudienceRule     `avro:"audience"`
	Message    wireMessage            `avro:"message"`
}

type wireInbox struct {
	DeliveryID string      `avro:"delivery_id"`
	UserID     string      `avro:"user_id"`
	BusinessID string      `avro:"business_id"`
	CampaignID string      `avro:"campaign_id"`
	SentAt     time.Time   `avro:"sent_at"`
	Message    wireMessage `avro:"message"`
}

// wireDecision holds both forms of a decisions record (schemas.Decision,
// schemas.DecisionChunk).
type wireDecision struct {
	DeliveryID  string            `avro:"delivery_id"`
	UserID      string            `avro:"user_id"`
	BusinessID  string            `avro:"business_id"`
	CampaignID  string            `avro:"campaign_id"`
	Outcome     schemas.Outcome   `avro:"outcome"`
	DecidedAsOf time.Time         `avro:"decided_as_of"`
	Partition   int32             `avro:"partition"`
	After       string            `avro:"chunk_after"`
	Done        bool              `avro:"fanout_done"`
	Users       []string          `avro:"users"`
	Outcomes    []schemas.Outcome `avro:"outcomes"`
}

// recordSerde is the serde of one record type on one subject.
type recordSerde struct {
	rc       *sr.Client
	subject  string
	fullName string       // the record's Avro full name, e.g. sponsor.v1.Interaction
	reader   *avro.Schema // ours
	id       int          // ours, as registered under subject

	writers sync.Map   // schema id (int) -> *writer
	fetchMu sync.Mutex // one registry look-up at a time, so a burst of records with a new id asks once
}

// writer is the outcome of checking one writer schema id: a schema that
// decodes its records into our reader's layout, or the reason it cannot.
type writer struct {
	schema *avro.Schema
	err    *DecodeError
}

func newRecordSerde(ctx context.Context, rc *sr.Client, topic, text string, reader *avro.Schema) (*recordSerde, error) {
	subject := Subject(topic)
	id, err := rc.RegisterSchema(ctx, subject, sr.Schema{Schema: text, Type: sr.TypeAvro}, -1, -1)
	if err != nil {
		return nil, fmt.Errorf("schemas: register schema under subject %q: %w", subject, err)
	}
	r := &recordSerde{
		rc:       rc,
		subject:  subject,
		fullName: fullName(reader.Root()),
		reader:   reader,
		id:       id,
	}
	r.writers.Store(id, &writer{schema: reader})
	return r, nil
}

// decode decodes the wire-format value b into v, a pointer to a wire struct.
func (r *recordSerde) decode(b []byte, v any) error {
	if len(b) < headerLen || b[0] != 0 {
		err := fmt.Errorf("want magic byte 0 and a 4-byte schema id, got %d bytes", len(b))
		if len(b) > 0 && b[0] != 0 {
			err = fmt.Errorf("magic byte %d, want 0", b[0])
		}
		return &DecodeError{Reason: deadletter.ReasonNotWireFormat, SchemaID: -1, Err: err}
	}
	// Registry ids are non-negative int32s; read as such so that a garbage id
	// stays an int on 32-bit platforms too.
	id := int(int32(binary.BigEndian.Uint32(b[1:headerLen])))
	w, err := r.writer(id)
	if err != nil {
		return err
	}
	rest, err := w.schema.Decode(b[headerLen:], v)
	if err != nil {
		return &DecodeError{Reason: deadletter.ReasonMalformed, SchemaID: id, Err: fmt.Errorf("decode %s: %w", r.fullName, err)}
	}
	if len(rest) > 0 {
		return &DecodeError{Reason: deadletter.ReasonMalformed, SchemaID: id, Err: fmt.Errorf("decode %s: %d trailing bytes after the record", r.fullName, len(rest))}
	}
	return nil
}

// own returns the Avro body of the wire-format value b if its header names our
// own schema, the one the fast paths read.
func (r *recordSerde) own(b []byte) ([]byte, bool) {
	if len(b) < headerLen || b[0] != 0 || binary.BigEndian.Uint32(b[1:headerLen]) != uint32(r.id) {
		return nil, false
	}
	return b[headerLen:], true
}

// invalid returns the DecodeError of a record b that decoded but holds a value
// our types cannot take.
func (r *recordSerde) invalid(b []byte, err error) error {
	return &DecodeError{
		Reason:   deadletter.ReasonInvalidValue,
		SchemaID: int(int32(binary.BigEndian.Uint32(b[1:headerLen]))),
		Err:      fmt.Errorf("%s: %w", r.fullName, err),
	}
}

// writer returns the schema that decodes records written with schema id into
// our reader's layout, asking the registry the first time it sees id.
func (r *recordSerde) writer(id int) (*writer, error) {
	if w, ok := r.writers.Load(id); ok {
		return w.(*writer).result()
	}
	if id <= 0 {
		// No registry hands out such ids; do not bother it with garbage.
		return nil, &DecodeError{Reason: deadletter.ReasonUnknownSchema, SchemaID: id, Err: fmt.Errorf("schema id %d is not a registry id", id)}
	}
	r.fetchMu.Lock()
	defer r.fetchMu.Unlock()
	if w, ok := r.writers.Load(id); ok {
		return w.(*writer).result()
	}
	ctx, cancel := context.WithTimeout(context.Background(), lookupTimeout)
	defer cancel()
	s, err := r.rc.SchemaByID(ctx, id)
	if err != nil {
		var re *sr.ResponseError
		if errors.As(err, &re) && re.StatusCode == http.StatusNotFound {
			return nil, &DecodeError{Reason: deadletter.ReasonUnknownSchema, SchemaID: id, Err: fmt.Errorf("registry has no schema %d: %w", id, err)}
		}
		return nil, fmt.Errorf("schemas: look up writer schema %d for subject %q: %w", id, r.subject, err)
	}
	w := r.resolve(id, s)
	r.writers.Store(id, w)
	return w.result()
}

func (w *writer) result() (*writer, error) {
	if w.err != nil {
		return nil, w.err
	}
	return w, nil
}

// resolve checks that the registered schema s (id) is a version of our record
// that our reader can read, and builds the schema that decodes its records.
func (r *recordSerde) resolve(id int, s sr.Schema) *writer {
	incompatible := func(err error) *writer {
		return &writer{err: &DecodeError{Reason: deadletter.ReasonIncompatibleSchema, SchemaID: id, Err: err}}
	}
	if s.Type != sr.TypeAvro {
		return incompatible(fmt.Errorf("writer schema is %v, want AVRO", s.Type))
	}
	if len(s.References) > 0 {
		return incompatible(errors.New("writer schema uses schema references, which are not supported"))
	}
	ws, err := avro.Parse(s.Schema)
	if err != nil {
		return incompatible(fmt.Errorf("parse writer schema: %w", err))
	}
	// A schema of another record is most likely another subject's: say so
	// rather than report a field-level mismatch.
	if got := fullName(ws.Root()); got != r.fullName {
		return incompatible(fmt.Errorf("writer schema is of record %q, want %q (subject %q)", got, r.fullName, r.subject))
	}
	rs, err := avro.Resolve(ws, r.reader)
	if err != nil {
		return incompatible(fmt.Errorf("writer schema cannot be read as %s: %w", r.fullName, err))
	}
	return &writer{schema: rs}
}

// append encodes v (a pointer to a wire struct) after the wire-format header.
func (r *recordSerde) append(dst []byte, v any) ([]byte, error) {
	out := binary.BigEndian.AppendUint32(append(dst, 0), uint32(r.id))
	out, err := r.reader.AppendEncode(out, v)
	if err != nil {
		return dst, fmt.Errorf("schemas: encode %s: %w", r.fullName, err)
	}
	return out, nil
}

// fullName returns the Avro full name of a named schema node ("" for others).
func fullName(n *avro.SchemaNode) string {
	if n.Name == "" || strings.Contains(n.Name, ".") || n.Namespace == "" {
		return n.Name
	}
	return n.Namespace + "." + n.Name
}
