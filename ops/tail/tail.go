// Package tail reads the pipeline's topics the way a downstream consumer
// must (read_committed: records of aborted or still-open transactions are
// never shown) and writes each record as one line of JSON, decoded through
// the schema registry: the tool behind `sponsor tail`.
//
// Each line is an object with the record's topic, partition, offset,
// timestamp (when it was written, RFC 3339), key, headers (if any) and
// value. Values of the interactions, campaigns and inbox topics are in the
// JSON shape of package schemas/jsonl (what `sponsor produce` reads); values
// of other topics (decisions) are decoded generically with their writer
// schema from the registry; a decisions record of the chunk form (one
// record per fan-out chunk) is shown as one line per candidate, each in the
// per-candidate form, so that a chunk reads as the records before it did. A dead letter shows its headers, its original
// value bytes in base64 ("value_base64") and, when those bytes decode as a
// record of the topic they came from, the decoded value; otherwise
// "decode_error" says why not.
//
// It only reads: it commits no offsets and joins no group.
package tail

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/twmb/avro"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sr"

	"github.com/sponsored/sponsor/deadletter"
	"github.com/sponsored/sponsor/kafkaconn"
	"github.com/sponsored/sponsor/schemas"
	"github.com/sponsored/sponsor/schemas/jsonl"
	"github.com/sponsored/sponsor/schemas/wire"
	"github.com/sponsored/sponsor/topics"
)

// The roles of the topics Tail reads, as named on the command line.
const (
	RoleInbox        = topics.RoleInbox
	RoleDeadLetter   = topics.RoleDeadLetter
	RoleInteractions = topics.RoleInteractions
	RoleCampaigns    = topics.RoleCampaigns
	RoleDecisions    = "decisions"
)

// Roles lists the roles Tail accepts.
var Roles = []string{RoleInbox, RoleDeadLetter, RoleInteractions, RoleCampaigns, RoleDecisions}

// From is where reading starts in every partition.
type From struct {
	// End starts after the last committed record (only new records);
	// otherwise reading starts at Time, or at the start when Time is zero.
	End bool
	// Time starts at the first record written at or after it (the record
	// timestamp, the time it was produced, not its event time).
	Time time.Time
}

// ParseFrom parses "start", "end" or an RFC 3339 time.
func ParseFrom(s string) (From, error) {
	switch s {
	case "start", "":
		return From{}, nil
	case "end":
		return From{End: true}, nil
	}
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return From{}, fmt.Errorf("want start, end or an RFC 3339 time (2025-06-01T12:00:00Z), got %q", s)
	}
	return From{Time: t}, nil
}

// Config says what to read and how.
type Config struct {
	// Brokers are the Kafka seed brokers. Required.
	Brokers []string
	// Registry is the schema registry URL. Required.
	Registry string
	// Names are the pipeline's topic names (topics.NewNames(prefix, group)).
	Names topics.Names
	// Decisions is the name of the decisions topic; default "decisions".
	Decisions string
	// Roles are the topics to read, among [Roles]. Required.
	Roles []string
	// From is where to start.
	From From
	// Limit stops after this many records in all; 0: no limit.
	Limit int
	// Follow keeps waiting for new records after the end; otherwise Tail
	// returns once it has read every partition up to its last stable
	// offset as of the start.
	Follow bool
	// ValuesOnly writes only the decoded values, one per line (for
	// `sponsor produce`); records that do not decode are reported to Warn.
	ValuesOnly bool
	// Warn receives a line per record ValuesOnly skips; nil discards.
	Warn io.Writer
	// ClientOpts are extra franz-go options for every client (TLS, SASL),
	// e.g. from kafkaconn.Security.KafkaOpts.
	ClientOpts []kgo.Opt
	// RegistryOpts are extra options of the schema registry client (basic
	// auth, bearer token, TLS), e.g. from kafkaconn.Security.RegistryOpts.
	RegistryOpts []sr.ClientOpt
}

// Record is one line of Tail's output.
type Record struct {
	Topic       string            `json:"topic"`
	Partition   int32             `json:"partition"`
	Offset      int64             `json:"offset"`
	Timestamp   string            `json:"timestamp"`
	Key         *string           `json:"key,omitempty"`
	KeyBase64   string            `json:"key_base64,omitempty"`
	Headers     map[string]string `json:"headers,omitempty"`
	ValueBase64 string            `json:"value_base64,omitempty"`
	Value       json.RawMessage   `json:"value,omitempty"`
	DecodeError string            `json:"decode_error,omitempty"`
}

// Run reads the topics of cfg and writes one line of JSON per record to w.
// It returns the number of records written.
func Run(ctx context.Context, cfg Config, w io.Writer) (int, error) {
	if len(cfg.Brokers) == 0 || cfg.Registry == "" {
		return 0, errors.New("tail: brokers and registry are required")
	}
	if len(cfg.Roles) == 0 {
		return 0, fmt.Errorf("tail: no topic given, want some of %s", strings.Join(Roles, ", "))
	}
	if cfg.Decisions == "" {
		cfg.Decisions = "decisions"
	}
	role := map[string]string{} // topic -> role
	var names []string
	for _, r := range cfg.Roles {
		var t string
		switch r {
		case RoleInbox:
			t = cfg.Names.Inbox
		case RoleDeadLetter:
			t = cfg.Names.DeadLetter
		case RoleInteractions:
			t = cfg.Names.Interactions
		case RoleCampaigns:
			t = cfg.Names.Campaigns
		case RoleDecisions:
			t = cfg.Decisions
		default:
			return 0, fmt.Errorf("tail: unknown topic %q, want some of %s", r, strings.Join(Roles, ", "))
		}
		if _, dup := role[t]; !dup {
			names = append(names, t)
		}
		role[t] = r
	}
	rc, err := sr.NewClient(append([]sr.ClientOpt{sr.URLs(cfg.Registry)}, cfg.RegistryOpts...)...)
	if err != nil {
		return 0, fmt.Errorf("schema registry %s: %w", cfg.Registry, err)
	}
	serde, err := wire.New(ctx, rc, wire.Topics{Interactions: cfg.Names.Interactions, Campaigns: cfg.Names.Campaigns, Inbox: cfg.Names.Inbox})
	if err != nil {
		return 0, err
	}
	d := &decoder{names: cfg.Names, serde: serde, generic: &generic{rc: rc, schemas: map[int]*avro.Schema{}}}

	admCl, err := kgo.NewClient(append(append([]kgo.Opt{}, cfg.ClientOpts...), kgo.SeedBrokers(cfg.Brokers...))...)
	if err != nil {
		return 0, err
	}
	defer admCl.Close()
	starts, ends, err := offsets(ctx, kadm.NewClient(admCl), cfg.From, names)
	if err != nil {
		return 0, err
	}
	rd := kafkaconn.Reader{
		Opts:   append(append([]kgo.Opt{}, cfg.ClientOpts...), kgo.SeedBrokers(cfg.Brokers...)),
		Topics: map[string][]int32{},
		Starts: starts,
		Ends:   ends,
		Follow: cfg.Follow,
	}
	for _, t := range names {
		rd.Topics[t] = nil
	}
	n := 0
	err = rd.Read(ctx, func(r *kgo.Record) error {
		lines, ok := d.record(r, role[r.Topic], cfg.ValuesOnly)
		if !ok {
			if cfg.Warn != nil {
				fmt.Fprintf(cfg.Warn, "skipped %s/%d@%d: %s\n", r.Topic, r.Partition, r.Offset, lines[0])
			}
			return nil
		}
		for _, line := range lines {
			if _, err := w.Write(append(line, '\n')); err != nil {
				return err
			}
			n++
			if cfg.Limit > 0 && n >= cfg.Limit {
				return kafkaconn.Stop
			}
		}
		return nil
	})
	if cfg.Follow && ctx.Err() != nil {
		return n, nil // stopped by the user
	}
	return n, err
}

// offsets returns, per topic and partition, where to start and the last
// stable offset now.
func offsets(ctx context.Context, adm *kadm.Client, from From, names []string) (starts, ends map[string]map[int32]int64, err error) {
	list := func(what string, l kadm.ListedOffsets, err error) (map[string]map[int32]int64, error) {
		if err != nil {
			return nil, fmt.Errorf("list %s offsets: %w", what, err)
		}
		out := map[string]map[int32]int64{}
		for _, t := range names {
			ps, ok := l[t]
			if !ok {
				return nil, fmt.Errorf("topic %q does not exist (check --topic-prefix)", t)
			}
			out[t] = map[int32]int64{}
			for p, o := range ps {
				if o.Err != nil {
					if p < 0 {
						return nil, fmt.Errorf("topic %q does not exist (check --topic-prefix): %w", t, o.Err)
					}
					return nil, fmt.Errorf("%s/%d: %w", t, p, o.Err)
				}
				out[t][p] = o.Offset
			}
		}
		return out, nil
	}
	l, lerr := adm.ListCommittedOffsets(ctx, names...)
	if ends, err = list("last stable", l, lerr); err != nil {
		return nil, nil, err
	}
	switch {
	case from.End:
		return ends, ends, nil
	case !from.Time.IsZero():
		l, lerr = adm.ListOffsetsAfterMilli(ctx, from.Time.UnixMilli(), names...)
		starts, err = list("time", l, lerr)
	default:
		l, lerr = adm.ListStartOffsets(ctx, names...)
		starts, err = list("start", l, lerr)
	}
	if err != nil {
		return nil, nil, err
	}
	for t, ps := range starts {
		for p, o := range ps {
			if o < 0 || o > ends[t][p] {
				// No record after the time, or one of an open transaction.
				starts[t][p] = ends[t][p]
			}
		}
	}
	return starts, ends, nil
}

// decoder renders records.
type decoder struct {
	names   topics.Names
	serde   *wire.Serde
	generic *generic
}

// record renders r of the topic with role as lines: one, or one per
// candidate of a decisions chunk; false when valuesOnly and the value does
// not decode (the one line then says why).
func (d *decoder) record(r *kgo.Record, role string, valuesOnly bool) ([][]byte, bool) {
	out := Record{
		Topic:     r.Topic,
		Partition: r.Partition,
		Offset:    r.Offset,
		Timestamp: r.Timestamp.UTC().Format(jsonl.Time),
	}
	if r.Key != nil {
		if utf8.Valid(r.Key) {
			k := string(r.Key)
			out.Key = &k
		} else {
			out.KeyBase64 = base64.StdEncoding.EncodeToString(r.Key)
		}
	}
	if len(r.Headers) > 0 {
		out.Headers = make(map[string]string, len(r.Headers))
		for _, h := range r.Headers {
			out.Headers[h.Key] = string(h.Value)
		}
	}
	source := role
	if role == RoleDeadLetter {
		out.ValueBase64 = base64.StdEncoding.EncodeToString(r.Value)
		switch deadletter.Parse(r).Topic {
		case d.names.Interactions:
			source = RoleInteractions
		case d.names.Campaigns:
			source = RoleCampaigns
		default:
			source = ""
		}
	}
	vs, err := d.values(source, r.Value)
	if err != nil {
		out.DecodeError = err.Error()
		if role != RoleDeadLetter {
			out.ValueBase64 = base64.StdEncoding.EncodeToString(r.Value)
		}
		vs = []json.RawMessage{nil}
	}
	if valuesOnly {
		if err != nil {
			return [][]byte{[]byte(err.Error())}, false
		}
		lines := make([][]byte, len(vs))
		for i, v := range vs {
			lines[i] = v
		}
		return lines, true
	}
	lines := make([][]byte, 0, len(vs))
	for _, v := range vs {
		out.Value = v
		b, err := json.Marshal(out)
		if err != nil { // cannot happen: every field is marshalable
			return [][]byte{[]byte(err.Error())}, false
		}
		lines = append(lines, b)
	}
	return lines, true
}

// values decodes the value b of a topic with role as JSON: one value, or,
// for a decisions record of the chunk form, one per candidate.
func (d *decoder) values(role string, b []byte) ([]json.RawMessage, error) {
	if role == RoleDecisions && b != nil {
		return d.generic.decodeDecisions(b)
	}
	v, err := d.value(role, b)
	if err != nil {
		return nil, err
	}
	return []json.RawMessage{v}, nil
}

// value decodes the value b of a topic with role as JSON.
func (d *decoder) value(role string, b []byte) (json.RawMessage, error) {
	if b == nil {
		return nil, errors.New("no value (a tombstone)")
	}
	switch role {
	case RoleInteractions:
		v, err := d.serde.DecodeInteraction(b)
		if err != nil {
			return nil, err
		}
		return jsonl.MarshalInteraction(&v)
	case RoleCampaigns:
		v, err := d.serde.DecodeCampaign(b)
		if err != nil {
			return nil, err
		}
		return jsonl.MarshalCampaign(&v)
	case RoleInbox:
		v, err := d.serde.DecodeInbox(b)
		if err != nil {
			return nil, err
		}
		return jsonl.MarshalInbox(&v)
	}
	return d.generic.decode(b)
}

// generic decodes wire-format values of any registered Avro schema.
type generic struct {
	rc      *sr.Client
	mu      sync.Mutex
	schemas map[int]*avro.Schema
}

func (g *generic) decode(b []byte) (json.RawMessage, error) {
	s, v, id, err := g.decodeAny(b)
	if err != nil {
		return nil, err
	}
	root := s.Root()
	var out bytes.Buffer
	if err := writeOrdered(&out, root, v, map[string]*avro.SchemaNode{}); err != nil {
		return nil, fmt.Errorf("schema %d: %w", id, err)
	}
	return out.Bytes(), nil
}

// decodeAny decodes the wire-format value b with its writer schema.
func (g *generic) decodeAny(b []byte) (s *avro.Schema, v any, id int, err error) {
	if len(b) < 5 || b[0] != 0 {
		return nil, nil, 0, errors.New("not in the schema-registry wire format (magic byte 0, 4-byte schema id)")
	}
	id = int(int32(binary.BigEndian.Uint32(b[1:5])))
	if s, err = g.schema(id); err != nil {
		return nil, nil, id, err
	}
	rest, err := s.Decode(b[5:], &v)
	if err != nil {
		return nil, nil, id, fmt.Errorf("decode with schema %d: %w", id, err)
	}
	if len(rest) > 0 {
		return nil, nil, id, fmt.Errorf("decode with schema %d: %d trailing bytes", id, len(rest))
	}
	return s, v, id, nil
}

// decodeDecisions decodes a value of the decisions topic generically, as
// decode does, but shows a record of the chunk form (non-empty users and
// outcomes arrays) as one value per candidate, in the per-candidate form
// of the same schema: its user_id, outcome and derived delivery_id set,
// the two arrays left out, the chunk's other fields (partition,
// chunk_after, fanout_done) kept.
func (g *generic) decodeDecisions(b []byte) ([]json.RawMessage, error) {
	s, v, id, err := g.decodeAny(b)
	if err != nil {
		return nil, err
	}
	root := s.Root()
	m, _ := v.(map[string]any)
	users, _ := m["users"].([]any)
	outcomes, _ := m["outcomes"].([]any)
	if root.Type != "record" || len(users) == 0 {
		var out bytes.Buffer
		if err := writeOrdered(&out, root, v, map[string]*avro.SchemaNode{}); err != nil {
			return nil, fmt.Errorf("schema %d: %w", id, err)
		}
		return []json.RawMessage{out.Bytes()}, nil
	}
	if len(outcomes) != len(users) {
		return nil, fmt.Errorf("schema %d: a decisions chunk of %d users but %d outcomes", id, len(users), len(outcomes))
	}
	// The record without the arrays; named types the arrays define
	// (Outcome, in outcomes' items if not before) are collected first.
	named := map[string]*avro.SchemaNode{}
	var scratch bytes.Buffer
	if err := writeOrdered(&scratch, root, v, named); err != nil {
		return nil, fmt.Errorf("schema %d: %w", id, err)
	}
	one := *root
	one.Fields = slices.DeleteFunc(slices.Clone(root.Fields), func(f avro.SchemaField) bool { return f.Name == "users" || f.Name == "outcomes" })
	campaign, _ := m["campaign_id"].(string)
	vals := make([]json.RawMessage, len(users))
	for i, u := range users {
		c := maps.Clone(m)
		c["user_id"], c["outcome"] = u, outcomes[i]
		if user, ok := u.(string); ok {
			c["delivery_id"] = schemas.DeliveryID(campaign, user)
		}
		var out bytes.Buffer
		if err := writeOrdered(&out, &one, c, named); err != nil {
			return nil, fmt.Errorf("schema %d: %w", id, err)
		}
		vals[i] = out.Bytes()
	}
	return vals, nil
}

// writeOrdered writes v, decoded with schema node n, as JSON in the shape
// of package jsonl: a record's fields in the schema's order (not sorted by
// name) and timestamps as RFC 3339 in UTC with milliseconds, so that every
// topic prints alike. named collects the named types seen so far, which
// later nodes may name by reference.
func writeOrdered(w *bytes.Buffer, n *avro.SchemaNode, v any, named map[string]*avro.SchemaNode) error {
	switch n.Type {
	case "record", "error", "enum", "fixed":
		named[fullName(n)] = n
		if n.Namespace != "" {
			named[n.Name] = n
		}
	case "null", "boolean", "int", "long", "float", "double", "bytes", "string", "array", "map", "union":
	default:
		def, ok := named[n.Type]
		if !ok {
			return fmt.Errorf("unknown named type %q", n.Type)
		}
		n = def
	}
	if t, ok := v.(time.Time); ok {
		return writeJSON(w, t.UTC().Format(jsonl.Time))
	}
	switch n.Type {
	case "record", "error":
		m, ok := v.(map[string]any)
		if !ok {
			return writeJSON(w, v)
		}
		w.WriteByte('{')
		for i := range n.Fields {
			f := &n.Fields[i]
			if i > 0 {
				w.WriteByte(',')
			}
			if err := writeJSON(w, f.Name); err != nil {
				return err
			}
			w.WriteByte(':')
			if err := writeOrdered(w, &f.Type, m[f.Name], named); err != nil {
				return err
			}
		}
		w.WriteByte('}')
		return nil
	case "array":
		items, ok := v.([]any)
		if !ok || n.Items == nil {
			return writeJSON(w, v)
		}
		w.WriteByte('[')
		for i, it := range items {
			if i > 0 {
				w.WriteByte(',')
			}
			if err := writeOrdered(w, n.Items, it, named); err != nil {
				return err
			}
		}
		w.WriteByte(']')
		return nil
	case "union":
		// Decoded untagged: the value of the branch that matched. nil is
		// the null branch; otherwise the first branch of the value's shape.
		if v == nil {
			w.WriteString("null")
			return nil
		}
		for i := range n.Branches {
			if b := &n.Branches[i]; b.Type != "null" && fits(b, v, named) {
				return writeOrdered(w, b, v, named)
			}
		}
	}
	return writeJSON(w, v)
}

// fits reports whether a value decoded untagged may come from branch b.
func fits(b *avro.SchemaNode, v any, named map[string]*avro.SchemaNode) bool {
	if def, ok := named[b.Type]; ok {
		b = def
	}
	switch v.(type) {
	case map[string]any:
		return b.Type == "record" || b.Type == "error" || b.Type == "map"
	case []any:
		return b.Type == "array"
	case time.Time:
		return b.LogicalType != ""
	}
	return true
}

func writeJSON(w *bytes.Buffer, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	w.Write(b)
	return nil
}

// fullName returns the Avro full name of a named schema node.
func fullName(n *avro.SchemaNode) string {
	if strings.Contains(n.Name, ".") || n.Namespace == "" {
		return n.Name
	}
	return n.Namespace + "." + n.Name
}

func (g *generic) schema(id int) (*avro.Schema, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if s, ok := g.schemas[id]; ok {
		return s, nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ss, err := g.rc.SchemaByID(ctx, id)
	if err != nil {
		return nil, fmt.Errorf("schema %d: %w", id, err)
	}
	if ss.Type != sr.TypeAvro {
		return nil, fmt.Errorf("schema %d is %v, not Avro", id, ss.Type)
	}
	s, err := avro.Parse(ss.Schema)
	if err != nil {
		return nil, fmt.Errorf("schema %d: %w", id, err)
	}
	g.schemas[id] = s
	return s, nil
}
