package tail

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"os"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sr"

	"github.com/sponsored/sponsor/deadletter"
	"github.com/sponsored/sponsor/deploy/embedded"
	"github.com/sponsored/sponsor/loadgen"
	"github.com/sponsored/sponsor/schemas"
	"github.com/sponsored/sponsor/schemas/jsonl"
	"github.com/sponsored/sponsor/schemas/wire"
	"github.com/sponsored/sponsor/topics"
)

type env struct {
	cfg   Config // connection and names; tests set the rest
	tg    loadgen.Target
	serde *wire.Serde
	rc    *sr.Client
	cl    *kgo.Client // plain producer
}

func start(t *testing.T) *env {
	t.Helper()
	ctx := testContext(t)
	stack, err := embedded.Start(embedded.Options{})
	if err != nil {
		t.Fatalf("start embedded stack: %v", err)
	}
	t.Cleanup(func() { stack.Close() })
	names := topics.NewNames("", "test")
	cl, err := kgo.NewClient(kgo.SeedBrokers(stack.Brokers...))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	adm := kadm.NewClient(cl)
	if _, err := (topics.Catalog{Names: names, Partitions: 3, ReplicationFactor: -1}).Ensure(ctx, adm, true); err != nil {
		t.Fatalf("create topics: %v", err)
	}
	// Ensure created decisions too (the catalog's audit topic).
	rc, err := sr.NewClient(sr.URLs(stack.RegistryURL))
	if err != nil {
		t.Fatal(err)
	}
	serde, err := wire.New(ctx, rc, wire.Topics{Interactions: names.Interactions, Campaigns: names.Campaigns, Inbox: names.Inbox})
	if err != nil {
		t.Fatal(err)
	}
	return &env{
		cfg:   Config{Brokers: stack.Brokers, Registry: stack.RegistryURL, Names: names},
		tg:    loadgen.Target{Brokers: stack.Brokers, Registry: stack.RegistryURL, Topics: names},
		serde: serde, rc: rc, cl: cl,
	}
}

func testContext(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// run tails with cfg and returns the lines decoded.
func (e *env) run(t *testing.T, mod func(*Config)) []Record {
	t.Helper()
	cfg := e.cfg
	mod(&cfg)
	var out bytes.Buffer
	n, err := Run(testContext(t), cfg, &out)
	if err != nil {
		t.Fatalf("Run(%v): %v", cfg.Roles, err)
	}
	var recs []Record
	for _, line := range strings.Split(strings.TrimSpace(out.String()), "\n") {
		if line == "" {
			continue
		}
		var r Record
		if err := json.Unmarshal([]byte(line), &r); err != nil {
			t.Fatalf("output line %q: %v", line, err)
		}
		recs = append(recs, r)
	}
	if n != len(recs) {
		t.Errorf("Run returned %d, wrote %d lines", n, len(recs))
	}
	return recs
}

func (e *env) produce(t *testing.T, recs ...*kgo.Record) {
	t.Helper()
	if err := e.cl.ProduceSync(testContext(t), recs...).FirstErr(); err != nil {
		t.Fatal(err)
	}
}

// transaction writes recs in a transaction and commits or aborts it.
func (e *env) transaction(t *testing.T, commit bool, recs ...*kgo.Record) {
	t.Helper()
	ctx := testContext(t)
	cl, err := kgo.NewClient(kgo.SeedBrokers(e.cfg.Brokers...), kgo.TransactionalID("tail-test-"+time.Now().Format("150405.000000000")))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	if err := cl.BeginTransaction(); err != nil {
		t.Fatal(err)
	}
	if err := cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		t.Fatal(err)
	}
	if err := cl.EndTransaction(ctx, kgo.TransactionEndTry(commit)); err != nil {
		t.Fatal(err)
	}
}

var t0 = time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)

func values(recs []Record) []string {
	var out []string
	for _, r := range recs {
		out = append(out, string(r.Value))
	}
	return out
}

// TestTailProduced writes records with loadgen.Produce and wants tail to show
// exactly those, decoded in the JSON shape produce reads, keyed as written;
// --values output parses back to the same records.
func TestTailProduced(t *testing.T) {
	e := start(t)
	label := "Go"
	ins := []schemas.Interaction{
		{EventID: "e1", UserID: "u1", BusinessID: "b1", Kind: schemas.UserMessage, OccurredAt: t0},
		{EventID: "e2", UserID: "u2", BusinessID: "b2", Kind: schemas.SponsoredOptOut, OccurredAt: t0.Add(time.Second)},
		{EventID: "e3", UserID: "u3", Kind: schemas.UserErased, OccurredAt: t0.Add(2 * time.Second)},
	}
	camps := []schemas.Campaign{{CampaignID: "c1", BusinessID: "b1", Action: schemas.Launch, SendAt: t0, ExpiresAt: t0.Add(time.Hour),
		Audience: []schemas.AudienceRule{{Kind: schemas.BotStarted, WithinDays: 30}}, Message: schemas.Message{Text: "hi", CTALabel: &label}}}
	if _, err := loadgen.Produce(context.Background(), e.tg, ins, camps); err != nil {
		t.Fatal(err)
	}
	recs := e.run(t, func(c *Config) { c.Roles = []string{RoleInteractions, RoleCampaigns} })
	want := map[string]string{}
	for i := range ins {
		b, _ := jsonl.MarshalInteraction(&ins[i])
		want[string(b)] = ins[i].UserID
	}
	for i := range camps {
		b, _ := jsonl.MarshalCampaign(&camps[i])
		want[string(b)] = camps[i].CampaignID
	}
	if len(recs) != len(want) {
		t.Fatalf("tail shows %d records %q, want %d", len(recs), values(recs), len(want))
	}
	for _, r := range recs {
		key, ok := want[string(r.Value)]
		if !ok {
			t.Errorf("tail shows %s, not one of the records written", r.Value)
			continue
		}
		if r.Key == nil || *r.Key != key || r.DecodeError != "" || r.ValueBase64 != "" {
			t.Errorf("record %s: key %v, decode error %q, value_base64 %q; want key %q and nothing else", r.Value, r.Key, r.DecodeError, r.ValueBase64, key)
		}
		delete(want, string(r.Value))
	}

	var out bytes.Buffer
	cfg := e.cfg
	cfg.Roles, cfg.ValuesOnly = []string{RoleInteractions}, true
	if _, err := Run(testContext(t), cfg, &out); err != nil {
		t.Fatal(err)
	}
	back, err := jsonl.ReadInteractions(&out, "tail output")
	if err != nil {
		t.Fatalf("tail --values output does not read back: %v", err)
	}
	got := map[string]schemas.Interaction{}
	for _, in := range back {
		got[in.EventID] = in
	}
	for _, in := range ins {
		if !reflect.DeepEqual(got[in.EventID], in) {
			t.Errorf("read back %+v, want %+v", got[in.EventID], in)
		}
	}
}

// TestTailReadCommitted checks that records of an aborted transaction are
// never shown (and a partition ending in markers still ends the run), that
// inbox records decode, and that -n, --from end and --from TIME select.
func TestTailReadCommitted(t *testing.T) {
	e := start(t)
	inbox := func(user, campaign string) *kgo.Record {
		m := schemas.InboxMessage{DeliveryID: "d-" + campaign + "-" + user, UserID: user, BusinessID: "b", CampaignID: campaign, SentAt: t0, Message: schemas.Message{Text: "hi"}}
		v, err := e.serde.AppendInbox(nil, &m)
		if err != nil {
			t.Fatal(err)
		}
		return &kgo.Record{Topic: e.cfg.Names.Inbox, Key: []byte(user), Value: v}
	}
	e.transaction(t, true, inbox("u1", "c1"), inbox("u2", "c1"))
	e.transaction(t, false, inbox("u3", "aborted"))
	e.transaction(t, true, inbox("u4", "c2"))
	e.transaction(t, false, inbox("u5", "aborted"))

	recs := e.run(t, func(c *Config) { c.Roles = []string{RoleInbox} })
	var got []string
	for _, r := range recs {
		var m struct {
			DeliveryID string `json:"delivery_id"`
		}
		if err := json.Unmarshal(r.Value, &m); err != nil || r.DecodeError != "" {
			t.Fatalf("inbox record %+v does not decode: %v", r, err)
		}
		got = append(got, m.DeliveryID)
	}
	want := []string{"d-c1-u1", "d-c1-u2", "d-c2-u4"}
	slices.Sort(got)
	if !reflect.DeepEqual(got, want) {
		t.Errorf("tail inbox shows deliveries %q, want %q (committed only)", got, want)
	}

	if recs := e.run(t, func(c *Config) { c.Roles = []string{RoleInbox}; c.Limit = 2 }); len(recs) != 2 {
		t.Errorf("-n 2 shows %d records", len(recs))
	}
	if recs := e.run(t, func(c *Config) { c.Roles = []string{RoleInbox}; c.From = From{End: true} }); len(recs) != 0 {
		t.Errorf("--from end shows %d records, want none", len(recs))
	}

	// Record timestamps decide --from TIME.
	old, recent := t0, t0.Add(time.Hour)
	in := func(id string, ts time.Time) *kgo.Record {
		v, err := e.serde.AppendInteraction(nil, &schemas.Interaction{EventID: id, UserID: "u", BusinessID: "b", Kind: schemas.UserMessage, OccurredAt: t0})
		if err != nil {
			t.Fatal(err)
		}
		return &kgo.Record{Topic: e.cfg.Names.Interactions, Key: []byte("u"), Value: v, Timestamp: ts}
	}
	e.produce(t, in("old", old), in("recent", recent))
	recs = e.run(t, func(c *Config) { c.Roles = []string{RoleInteractions}; c.From = From{Time: recent} })
	if len(recs) != 1 || !strings.Contains(string(recs[0].Value), `"event_id":"recent"`) {
		t.Errorf("--from %v shows %q, want only the recent record", recent, values(recs))
	}
}

// TestTailDeadLetters checks that a dead letter shows its headers and
// original bytes, plus the decoded value when the bytes decode as a record
// of their source topic, and a decode error otherwise.
func TestTailDeadLetters(t *testing.T) {
	e := start(t)
	in := schemas.Interaction{EventID: "e1", UserID: "u1", BusinessID: "b1", Kind: schemas.BotStarted, OccurredAt: t0}
	good, err := e.serde.AppendInteraction(nil, &in)
	if err != nil {
		t.Fatal(err)
	}
	garbage := []byte{0, 0, 0, 0, 9, 1, 2}
	headers := func(reason string) []kgo.RecordHeader {
		return []kgo.RecordHeader{
			{Key: deadletter.HeaderTopic, Value: []byte(e.cfg.Names.Interactions)},
			{Key: deadletter.HeaderPartition, Value: []byte("2")},
			{Key: deadletter.HeaderOffset, Value: []byte("41")},
			{Key: deadletter.HeaderReason, Value: []byte(reason)},
		}
	}
	e.produce(t,
		&kgo.Record{Topic: e.cfg.Names.DeadLetter, Key: []byte("someone-else"), Value: good, Headers: headers("misrouted-key")},
		&kgo.Record{Topic: e.cfg.Names.DeadLetter, Key: []byte{0xff, 0xfe}, Value: garbage, Headers: headers("unknown-schema-id")},
	)
	recs := e.run(t, func(c *Config) { c.Roles = []string{RoleDeadLetter} })
	if len(recs) != 2 {
		t.Fatalf("tail deadletter shows %d records, want 2", len(recs))
	}
	if recs[0].ValueBase64 != base64.StdEncoding.EncodeToString(good) {
		recs[0], recs[1] = recs[1], recs[0]
	}
	wantValue, _ := jsonl.MarshalInteraction(&in)
	r := recs[0]
	if r.Headers[deadletter.HeaderReason] != "misrouted-key" || r.Headers[deadletter.HeaderOffset] != "41" || r.Headers[deadletter.HeaderTopic] != e.cfg.Names.Interactions {
		t.Errorf("dead letter headers %v, want the ones written", r.Headers)
	}
	if r.ValueBase64 != base64.StdEncoding.EncodeToString(good) || string(r.Value) != string(wantValue) || r.DecodeError != "" || *r.Key != "someone-else" {
		t.Errorf("decodable dead letter: %+v; want original bytes, key and decoded value %s", r, wantValue)
	}
	r = recs[1]
	if r.ValueBase64 != base64.StdEncoding.EncodeToString(garbage) || r.Value != nil || !strings.Contains(r.DecodeError, "unknown-schema-id") {
		t.Errorf("undecodable dead letter: %+v; want original bytes and a decode error", r)
	}
	if r.Key != nil || r.KeyBase64 != base64.StdEncoding.EncodeToString([]byte{0xff, 0xfe}) {
		t.Errorf("binary key shown as %v / %q, want key_base64", r.Key, r.KeyBase64)
	}
}

// TestTailDecisionsAndFollow decodes a topic of a schema tail has never seen
// (decisions) through the registry, and with Follow waits for new records.
func TestTailDecisionsAndFollow(t *testing.T) {
	e := start(t)
	ctx := testContext(t)
	ss, err := e.rc.CreateSchema(ctx, "decisions-value", sr.Schema{Type: sr.TypeAvro, Schema: `{"type":"record","name":"Decision","fields":[
		{"name":"campaign_id","type":"string"},{"name":"user_id","type":"string"},
		{"name":"outcome","type":{"type":"enum","name":"Outcome","symbols":["DELIVERED","NO_CONTACT"]}},
		{"name":"decided_as_of","type":{"type":"long","logicalType":"timestamp-millis"}},
		{"name":"reason","type":["null","string"],"default":null}]}`})
	if err != nil {
		t.Fatal(err)
	}
	// campaign_id "c1", user_id "u1", outcome 1 (NO_CONTACT), decided as
	// of 2025-06-01T12:00:00.250Z, reason null.
	decision := func(user string) *kgo.Record {
		v := binary.BigEndian.AppendUint32([]byte{0}, uint32(ss.ID))
		v = append(v, 4, 'c', '1', byte(2*len(user)))
		v = append(v, user...)
		v = append(v, 2)
		v = binary.AppendVarint(v, 1748779200250)
		v = append(v, 0)
		return &kgo.Record{Topic: "decisions", Key: []byte(user), Value: v}
	}
	e.produce(t, decision("u1"))

	var (
		out  syncBuffer
		wg   sync.WaitGroup
		n    int
		rerr error
	)
	cfg := e.cfg
	cfg.Roles, cfg.Follow, cfg.Limit = []string{RoleDecisions}, true, 3
	wg.Go(func() { n, rerr = Run(ctx, cfg, &out) })
	// Wait until the first record is shown, then write two more.
	for !strings.Contains(out.String(), "\n") {
		if ctx.Err() != nil {
			t.Fatal("tail --follow showed nothing")
		}
		time.Sleep(10 * time.Millisecond)
	}
	e.produce(t, decision("u2"), decision("u3"))
	wg.Wait()
	if rerr != nil || n != 3 {
		t.Fatalf("Run --follow -n 3 = %d, %v", n, rerr)
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	// The records are on several partitions: no order between them.
	var values []string
	for _, line := range lines {
		var r Record
		if err := json.Unmarshal([]byte(line), &r); err != nil {
			t.Fatal(err)
		}
		values = append(values, string(r.Value))
	}
	slices.Sort(values)
	for i, v := range values {
		// The schema's field order and jsonl's times, as for the other
		// topics (not sorted names and a time without milliseconds).
		want := `{"campaign_id":"c1","user_id":"u` + string(rune('1'+i)) + `","outcome":"NO_CONTACT","decided_as_of":"2025-06-01T12:00:00.250Z","reason":null}`
		if v != want {
			t.Errorf("decision %d: %s, want %s", i, v, want)
		}
	}
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestTailDecisionChunks shows a decisions topic that holds both forms: a
// record of version 1's per-candidate form as one line, and a chunk record
// of version 2 as one line per candidate, in the per-candidate shape with
// the derived delivery id; and -n counts lines, not records.
func TestTailDecisionChunks(t *testing.T) {
	e := start(t)
	ctx := testContext(t)
	v1, err := os.ReadFile("../../schemas/wire/testdata/decision_v1.avsc")
	if err != nil {
		t.Fatal(err)
	}
	old, err := e.rc.CreateSchema(ctx, "decisions-value", sr.Schema{Type: sr.TypeAvro, Schema: string(v1)})
	if err != nil {
		t.Fatal(err)
	}
	serde, err := wire.New(ctx, e.rc, wire.Topics{Interactions: e.cfg.Names.Interactions, Campaigns: e.cfg.Names.Campaigns, Inbox: e.cfg.Names.Inbox, Decisions: "decisions"})
	if err != nil {
		t.Fatal(err)
	}
	// Version 1: delivery_id "d1", user_id "u1", business_id "b1",
	// campaign_id "c1", outcome BLOCKED, decided as of
	// 2025-06-01T12:00:00.250Z.
	v := binary.BigEndian.AppendUint32([]byte{0}, uint32(old.ID))
	v = append(v, 4, 'd', '1', 4, 'u', '1', 4, 'b', '1', 4, 'c', '1', 4)
	v = binary.AppendVarint(v, 1748779200250)
	chunk, err := serde.AppendDecisionChunk(nil, &schemas.DecisionChunk{
		BusinessID: "b1", CampaignID: "c2", DecidedAsOf: time.UnixMilli(1748779200250), Partition: 0, After: "u1", Done: true,
		Users: []string{"u2", "u3"}, Outcomes: []schemas.Outcome{schemas.Delivered, schemas.NotInAudience},
	})
	if err != nil {
		t.Fatal(err)
	}
	e.produce(t, &kgo.Record{Topic: "decisions", Partition: 0, Key: []byte("u1"), Value: v}, &kgo.Record{Topic: "decisions", Partition: 0, Key: []byte("c2"), Value: chunk})
	recs := e.run(t, func(c *Config) { c.Roles = []string{RoleDecisions} })
	want := []string{
		`{"delivery_id":"d1","user_id":"u1","business_id":"b1","campaign_id":"c1","outcome":"BLOCKED","decided_as_of":"2025-06-01T12:00:00.250Z"}`,
		`{"delivery_id":"` + schemas.DeliveryID("c2", "u2") + `","user_id":"u2","business_id":"b1","campaign_id":"c2","outcome":"DELIVERED","decided_as_of":"2025-06-01T12:00:00.250Z","partition":0,"chunk_after":"u1","fanout_done":true}`,
		`{"delivery_id":"` + schemas.DeliveryID("c2", "u3") + `","user_id":"u3","business_id":"b1","campaign_id":"c2","outcome":"NOT_IN_AUDIENCE","decided_as_of":"2025-06-01T12:00:00.250Z","partition":0,"chunk_after":"u1","fanout_done":true}`,
	}
	if len(recs) != len(want) {
		t.Fatalf("tail decisions: %d lines, want %d: %+v", len(recs), len(want), recs)
	}
	for i, r := range recs {
		if string(r.Value) != want[i] {
			t.Errorf("line %d: %s\n want %s", i, r.Value, want[i])
		}
	}
	if recs[1].Offset != recs[2].Offset || recs[0].Offset == recs[1].Offset {
		t.Errorf("offsets %d, %d, %d: want the chunk's two lines at its one offset", recs[0].Offset, recs[1].Offset, recs[2].Offset)
	}
	if n := len(e.run(t, func(c *Config) { c.Roles, c.Limit = []string{RoleDecisions}, 2 })); n != 2 {
		t.Errorf("tail decisions -n 2: %d lines, want 2", n)
	}
}
