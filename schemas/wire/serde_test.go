package wire_test

import (
	"context"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"os"
	"reflect"
	"sync"
	"testing"
	"time"

	"github.com/linkedin/goavro/v2"
	"github.com/twmb/franz-go/pkg/sr"
	"github.com/twmb/franz-go/pkg/sr/srfake"

	"github.com/sponsored/sponsor/deadletter"
	"github.com/sponsored/sponsor/schemas"
	"github.com/sponsored/sponsor/schemas/compat"
	"github.com/sponsored/sponsor/schemas/wire"
)

var defaultTopics = wire.Topics{Interactions: "interactions", Campaigns: "campaigns", Inbox: "inbox"}

// newRegistry starts an in-memory registry, closed when the test ends.
func newRegistry(t testing.TB) (*srfake.Registry, *sr.Client) {
	t.Helper()
	reg := srfake.New()
	t.Cleanup(reg.Close)
	rc, err := sr.NewClient(sr.URLs(reg.URL()))
	if err != nil {
		t.Fatalf("sr.NewClient: %v", err)
	}
	return reg, rc
}

func newSerde(t testing.TB, rc *sr.Client) *wire.Serde {
	t.Helper()
	s, err := wire.New(context.Background(), rc, defaultTopics)
	if err != nil {
		t.Fatalf("NewSerde: %v", err)
	}
	return s
}

// register registers a schema under a subject of the fake and returns its id.
func register(t testing.TB, reg *srfake.Registry, subject, schema string) int {
	t.Helper()
	id, _, err := reg.RegisterSchema(subject, sr.Schema{Schema: schema, Type: sr.TypeAvro})
	if err != nil {
		t.Fatalf("register under %s: %v", subject, err)
	}
	return id
}

// goavroWire encodes native with goavro (an implementation independent of the
// serde's) and prepends the wire-format header with id.
func goavroWire(t testing.TB, schema string, id int, native map[string]any) []byte {
	t.Helper()
	codec, err := goavro.NewCodec(schema)
	if err != nil {
		t.Fatalf("goavro.NewCodec: %v", err)
	}
	b := binary.BigEndian.AppendUint32([]byte{0}, uint32(id))
	b, err = codec.BinaryFromNative(b, native)
	if err != nil {
		t.Fatalf("goavro encode %v: %v", native, err)
	}
	return b
}

// schemaID returns the id in a wire-format value's header.
func schemaID(t testing.TB, b []byte) int {
	t.Helper()
	if len(b) < 5 || b[0] != 0 {
		t.Fatalf("not wire format: % x", b)
	}
	return int(binary.BigEndian.Uint32(b[1:5]))
}

// evolve returns schema changed by edit, which gets the schema's JSON object.
func evolve(t testing.TB, schema string, edit func(rec map[string]any)) string {
	t.Helper()
	var rec map[string]any
	if err := json.Unmarshal([]byte(schema), &rec); err != nil {
		t.Fatalf("unmarshal schema: %v", err)
	}
	edit(rec)
	b, err := json.Marshal(rec)
	if err != nil {
		t.Fatalf("marshal schema: %v", err)
	}
	return string(b)
}

// field returns the named field object of a record's JSON object.
func field(rec map[string]any, name string) map[string]any {
	for _, f := range rec["fields"].([]any) {
		if f := f.(map[string]any); f["name"] == name {
			return f
		}
	}
	panic("no field " + name)
}

func addField(rec map[string]any, at int, f map[string]any) {
	fs := rec["fields"].([]any)
	rec["fields"] = append(fs[:at:at], append([]any{f}, fs[at:]...)...)
}

func removeField(rec map[string]any, name string) {
	var fs []any
	for _, f := range rec["fields"].([]any) {
		if f.(map[string]any)["name"] != name {
			fs = append(fs, f)
		}
	}
	rec["fields"] = fs
}

func ptr(s string) *string { return &s }

func ms(n int64) time.Time { return time.UnixMilli(n).UTC() }

// mustEqual fails if got and want differ, showing both.
func mustEqual(t *testing.T, what string, got, want any) {
	t.Helper()
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("%s:\n got  %+v\n want %+v", what, got, want)
	}
}

// mustDecodeError fails unless err is a *DecodeError with reason.
func mustDecodeError(t *testing.T, err error, reason deadletter.Reason) *wire.DecodeError {
	t.Helper()
	var de *wire.DecodeError
	if !errors.As(err, &de) {
		t.Fatalf("want a *DecodeError with reason %q, got %T: %v", reason, err, err)
	}
	if de.Reason != reason {
		t.Fatalf("want reason %q, got %q (%v)", reason, de.Reason, err)
	}
	return de
}

func TestRoundTripInteraction(t *testing.T) {
	_, rc := newRegistry(t)
	s := newSerde(t, rc)
	for _, want := range []schemas.Interaction{
		{EventID: "e1", UserID: "u1", BusinessID: "b1", Kind: schemas.UserMessage, OccurredAt: ms(1_700_000_000_123)},
		{EventID: "e2", UserID: "u1", BusinessID: "b1", Kind: schemas.BotCTAClick, OccurredAt: ms(1)},
		{EventID: "e3", UserID: "u2", BusinessID: "b2", Kind: schemas.SponsoredOptIn, OccurredAt: ms(-1_000)},
		{EventID: "e4", UserID: "u3", BusinessID: "", Kind: schemas.UserErased, OccurredAt: ms(0)},
		{EventID: "", UserID: "ünïcødé ✓", BusinessID: "b", Kind: schemas.Block, OccurredAt: ms(253_402_300_799_999)},
	} {
		t.Run(want.EventID+"/"+want.Kind.String(), func(t *testing.T) {
			b, err := s.AppendInteraction([]byte("prefix"), &want)
			if err != nil {
				t.Fatalf("AppendInteraction: %v", err)
			}
			if string(b[:6]) != "prefix" {
				t.Fatalf("AppendInteraction changed dst's bytes: got %q, want prefix %q", b[:6], "prefix")
			}
			got, err := s.DecodeInteraction(b[6:])
			if err != nil {
				t.Fatalf("DecodeInteraction: %v", err)
			}
			mustEqual(t, "decoded interaction", got, want)
		})
	}
}

func TestRoundTripCampaign(t *testing.T) {
	_, rc := newRegistry(t)
	s := newSerde(t, rc)
	for _, tc := range []struct {
		name string
		want schemas.Campaign
	}{
		{"minimal", schemas.Campaign{
			CampaignID: "c1", BusinessID: "b1", Action: schemas.Launch,
			SendAt: ms(1_700_000_000_000), ExpiresAt: ms(1_700_086_400_000),
			Message: schemas.Message{Text: "hello"},
		}},
		{"full", schemas.Campaign{
			CampaignID: "c2", BusinessID: "b1", Action: schemas.Launch,
			SendAt: ms(1_700_000_000_001), ExpiresAt: ms(1_700_000_000_999),
			Audience: []schemas.AudienceRule{
				{Kind: schemas.BotCTAClick, WithinDays: 7},
				{Kind: schemas.BotStarted, WithinDays: 0},
				{Kind: schemas.UserMessage, WithinDays: 365},
			},
			Message: schemas.Message{Text: "sale!", CTALabel: ptr("Shop"), CTAURL: ptr("https://example.com/s")},
		}},
		{"cancel, label only", schemas.Campaign{
			CampaignID: "c3", BusinessID: "b2", Action: schemas.Cancel,
			Message: schemas.Message{Text: "", CTALabel: ptr("")},
		}},
		{"url only", schemas.Campaign{
			CampaignID: "c4", BusinessID: "b2", Action: schemas.Launch,
			Message: schemas.Message{Text: "x", CTAURL: ptr("https://example.com")},
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.want.SendAt.IsZero() {
				// The zero time survives too (as year 1, UTC).
				tc.want.SendAt, tc.want.ExpiresAt = time.Time{}, time.Time{}
			}
			b, err := s.AppendCampaign(nil, &tc.want)
			if err != nil {
				t.Fatalf("AppendCampaign: %v", err)
			}
			got, err := s.DecodeCampaign(b)
			if err != nil {
				t.Fatalf("DecodeCampaign: %v", err)
			}
			mustEqual(t, "decoded campaign", got, tc.want)
		})
	}
}

func TestRoundTripInbox(t *testing.T) {
	_, rc := newRegistry(t)
	s := newSerde(t, rc)
	for _, want := range []schemas.InboxMessage{
		{DeliveryID: "d1", UserID: "u1", BusinessID: "b1", CampaignID: "c1", SentAt: ms(1_700_000_000_123),
			Message: schemas.Message{Text: "hi"}},
		{DeliveryID: "d2", UserID: "u1", BusinessID: "b1", CampaignID: "c1", SentAt: ms(42),
			Message: schemas.Message{Text: "hi", CTALabel: ptr("Go"), CTAURL: ptr("https://example.com")}},
	} {
		t.Run(want.DeliveryID, func(t *testing.T) {
			b, err := s.AppendInbox(nil, &want)
			if err != nil {
				t.Fatalf("AppendInbox: %v", err)
			}
			got, err := s.DecodeInbox(b)
			if err != nil {
				t.Fatalf("DecodeInbox: %v", err)
			}
			mustEqual(t, "decoded inbox message", got, want)
		})
	}
}

func TestTimestampsKeepMilliseconds(t *testing.T) {
	_, rc := newRegistry(t)
	s := newSerde(t, rc)
	in := schemas.Interaction{EventID: "e", UserID: "u", BusinessID: "b",
		OccurredAt: time.Date(2025, 3, 1, 12, 0, 0, 123_456_789, time.FixedZone("CET", 3600))}
	b, err := s.AppendInteraction(nil, &in)
	if err != nil {
		t.Fatalf("AppendInteraction: %v", err)
	}
	got, err := s.DecodeInteraction(b)
	if err != nil {
		t.Fatalf("DecodeInteraction: %v", err)
	}
	want := time.Date(2025, 3, 1, 11, 0, 0, 123_000_000, time.UTC)
	if !got.OccurredAt.Equal(want) || got.OccurredAt.Location() != time.UTC {
		t.Fatalf("OccurredAt: got %v, want %v (UTC, truncated to ms)", got.OccurredAt, want)
	}
}

func TestEncodeRejects(t *testing.T) {
	_, rc := newRegistry(t)
	s := newSerde(t, rc)
	dst := []byte("keep")
	for _, tc := range []struct {
		name   string
		encode func() ([]byte, error)
	}{
		{"interaction kind out of range", func() ([]byte, error) {
			return s.AppendInteraction(dst, &schemas.Interaction{Kind: 42})
		}},
		{"audience kind BUSINESS_MESSAGE", func() ([]byte, error) {
			return s.AppendCampaign(dst, &schemas.Campaign{Audience: []schemas.AudienceRule{{Kind: schemas.BusinessMessage}}})
		}},
		{"audience negative within_days", func() ([]byte, error) {
			return s.AppendCampaign(dst, &schemas.Campaign{Audience: []schemas.AudienceRule{{Kind: schemas.UserMessage, WithinDays: -1}}})
		}},
		{"campaign action out of range", func() ([]byte, error) {
			return s.AppendCampaign(dst, &schemas.Campaign{Action: 2})
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b, err := tc.encode()
			if err == nil {
				t.Fatalf("want an error, got none (% x)", b)
			}
			if string(b) != "keep" {
				t.Fatalf("on error want dst back unchanged %q, got %q", "keep", b)
			}
		})
	}
}

func TestNewSerdeIsIdempotent(t *testing.T) {
	reg, rc := newRegistry(t)
	s1, s2 := newSerde(t, rc), newSerde(t, rc)
	for _, subject := range []string{"interactions-value", "campaigns-value", "inbox-value"} {
		if !reg.SubjectExists(subject) {
			t.Errorf("subject %q not registered", subject)
		}
	}
	in := schemas.Interaction{EventID: "e"}
	b1, err1 := s1.AppendInteraction(nil, &in)
	b2, err2 := s2.AppendInteraction(nil, &in)
	if err1 != nil || err2 != nil {
		t.Fatalf("AppendInteraction: %v, %v", err1, err2)
	}
	if id1, id2 := schemaID(t, b1), schemaID(t, b2); id1 != id2 {
		t.Fatalf("second NewSerde registered a new id: got %d, want %d", id2, id1)
	}
	if _, v := reg.GetSchema("interactions-value", 2); v {
		t.Fatalf("second NewSerde created version 2 of interactions-value")
	}
}

func TestNewSerdeRejectsBadTopics(t *testing.T) {
	_, rc := newRegistry(t)
	for _, topics := range []wire.Topics{
		{},
		{Interactions: "i", Campaigns: "c"},
		{Interactions: "same", Campaigns: "c", Inbox: "same"},
	} {
		if _, err := wire.New(context.Background(), rc, topics); err == nil {
			t.Errorf("NewSerde(%+v): want an error, got none", topics)
		}
	}
	if _, err := wire.New(context.Background(), nil, defaultTopics); err == nil {
		t.Errorf("NewSerde(nil client): want an error, got none")
	}
}

func TestTopicPrefix(t *testing.T) {
	reg, rc := newRegistry(t)
	topics := wire.Topics{Interactions: "dev.interactions", Campaigns: "dev.campaigns", Inbox: "dev.inbox"}
	if _, err := wire.New(context.Background(), rc, topics); err != nil {
		t.Fatalf("NewSerde: %v", err)
	}
	if !reg.SubjectExists("dev.inbox-value") || reg.SubjectExists("inbox-value") {
		t.Fatalf("want subject dev.inbox-value and no inbox-value")
	}
}

// TestEvolvedWriter decodes records whose producers use another version of
// our schemas, registered under the subject, written by goavro.
func TestEvolvedWriter(t *testing.T) {
	reg, rc := newRegistry(t)
	s := newSerde(t, rc)

	t.Run("interaction with an added optional field", func(t *testing.T) {
		schema := evolve(t, schemas.InteractionSchema(), func(rec map[string]any) {
			addField(rec, 2, map[string]any{"name": "channel", "type": []any{"null", "string"}, "default": nil})
		})
		id := register(t, reg, "interactions-value", schema)
		b := goavroWire(t, schema, id, map[string]any{
			"event_id": "e1", "user_id": "u1", "channel": goavro.Union("string", "bot"),
			"business_id": "b1", "kind": "BOT_STARTED", "occurred_at": ms(1_700_000_000_123),
		})
		got, err := s.DecodeInteraction(b)
		if err != nil {
			t.Fatalf("DecodeInteraction: %v", err)
		}
		mustEqual(t, "decoded interaction", got, schemas.Interaction{
			EventID: "e1", UserID: "u1", BusinessID: "b1", Kind: schemas.BotStarted, OccurredAt: ms(1_700_000_000_123),
		})
	})

	t.Run("campaign with added fields, reordered enum, older message", func(t *testing.T) {
		schema := evolve(t, schemas.CampaignSchema(), func(rec map[string]any) {
			addField(rec, 0, map[string]any{"name": "priority", "type": "int", "default": 0})
			// An older Message without cta_url: the reader's default (null) applies.
			msg := field(rec, "message")["type"].(map[string]any)
			removeField(msg, "cta_url")
			// The writer lists ContactKind's symbols in another order:
			// they resolve by name.
			rule := field(rec, "audience")["type"].(map[string]any)["items"].(map[string]any)
			field(rule, "kind")["type"].(map[string]any)["symbols"] = []any{"BOT_CTA_CLICK", "USER_MESSAGE", "BOT_STARTED"}
		})
		id := register(t, reg, "campaigns-value", schema)
		b := goavroWire(t, schema, id, map[string]any{
			"priority": 3, "campaign_id": "c1", "business_id": "b1", "action": "LAUNCH",
			"send_at": ms(1_700_000_000_000), "expires_at": ms(1_700_000_360_000),
			"audience": []any{
				map[string]any{"kind": "BOT_CTA_CLICK", "within_days": 7},
				map[string]any{"kind": "USER_MESSAGE", "within_days": 0},
			},
			"message": map[string]any{"text": "hi", "cta_label": goavro.Union("string", "Go")},
		})
		got, err := s.DecodeCampaign(b)
		if err != nil {
			t.Fatalf("DecodeCampaign: %v", err)
		}
		mustEqual(t, "decoded campaign", got, schemas.Campaign{
			CampaignID: "c1", BusinessID: "b1", Action: schemas.Launch,
			SendAt: ms(1_700_000_000_000), ExpiresAt: ms(1_700_000_360_000),
			Audience: []schemas.AudienceRule{{Kind: schemas.BotCTAClick, WithinDays: 7}, {Kind: schemas.UserMessage}},
			Message:  schemas.Message{Text: "hi", CTALabel: ptr("Go")},
		})
	})

	t.Run("inbox with an added field in the message", func(t *testing.T) {
		schema := evolve(t, schemas.InboxSchema(), func(rec map[string]any) {
			msg := field(rec, "message")["type"].(map[string]any)
			addField(msg, 1, map[string]any{"name": "image_url", "type": []any{"null", "string"}, "default": nil})
		})
		id := register(t, reg, "inbox-value", schema)
		b := goavroWire(t, schema, id, map[string]any{
			"delivery_id": "d1", "user_id": "u1", "business_id": "b1", "campaign_id": "c1",
			"sent_at": ms(5), "message": map[string]any{
				"text": "hi", "image_url": goavro.Union("string", "https://example.com/i.png"),
				"cta_label": nil, "cta_url": goavro.Union("string", "https://example.com"),
			},
		})
		got, err := s.DecodeInbox(b)
		if err != nil {
			t.Fatalf("DecodeInbox: %v", err)
		}
		mustEqual(t, "decoded inbox message", got, schemas.InboxMessage{
			DeliveryID: "d1", UserID: "u1", BusinessID: "b1", CampaignID: "c1", SentAt: ms(5),
			Message: schemas.Message{Text: "hi", CTAURL: ptr("https://example.com")},
		})
	})
}

// TestDecodeErrors feeds every kind of bad value to the decoders and checks
// the DecodeError's reason (and schema id where there is one).
func TestDecodeErrors(t *testing.T) {
	reg, rc := newRegistry(t)
	s := newSerde(t, rc)

	valid, err := s.AppendInteraction(nil, &schemas.Interaction{EventID: "e", UserID: "u", BusinessID: "b", Kind: schemas.Block, OccurredAt: ms(7)})
	if err != nil {
		t.Fatalf("AppendInteraction: %v", err)
	}
	interactionID := schemaID(t, valid)
	inbox, err := s.AppendInbox(nil, &schemas.InboxMessage{DeliveryID: "d", Message: schemas.Message{Text: "t"}})
	if err != nil {
		t.Fatalf("AppendInbox: %v", err)
	}
	inboxID := schemaID(t, inbox)
	withID := func(b []byte, id int) []byte {
		out := binary.BigEndian.AppendUint32([]byte{0}, uint32(id))
		return append(out, b[5:]...)
	}

	// A producer's InteractionKind with a symbol we do not know, registered
	// under our subject (srfake's compatibility check accepts anything).
	newKind := evolve(t, schemas.InteractionSchema(), func(rec map[string]any) {
		kind := field(rec, "kind")["type"].(map[string]any)
		kind["symbols"] = append(kind["symbols"].([]any), "REACTION")
	})
	newKindID := register(t, reg, "interactions-value", newKind)
	// A writer without a field that has no default in our reader.
	noEventID := evolve(t, schemas.InteractionSchema(), func(rec map[string]any) { removeField(rec, "event_id") })
	noEventIDID := register(t, reg, "interactions-value", noEventID)
	// A writer whose occurred_at is a string: no promotion to long.
	stringTime := evolve(t, schemas.InteractionSchema(), func(rec map[string]any) { field(rec, "occurred_at")["type"] = "string" })
	stringTimeID := register(t, reg, "interactions-value", stringTime)
	// A JSON schema under the subject.
	jsonID, _, err := reg.RegisterSchema("interactions-value", sr.Schema{Schema: `{"type":"object"}`, Type: sr.TypeJSON})
	if err != nil {
		t.Fatalf("register JSON schema: %v", err)
	}
	// A campaigns writer whose ContactKind admits BUSINESS_MESSAGE.
	anyKind := evolve(t, schemas.CampaignSchema(), func(rec map[string]any) {
		rule := field(rec, "audience")["type"].(map[string]any)["items"].(map[string]any)
		kind := field(rule, "kind")["type"].(map[string]any)
		kind["symbols"] = append(kind["symbols"].([]any), "BUSINESS_MESSAGE")
	})
	anyKindID := register(t, reg, "campaigns-value", anyKind)
	campaign := func(kind string, withinDays int) map[string]any {
		return map[string]any{
			"campaign_id": "c", "business_id": "b", "action": "LAUNCH", "send_at": ms(0), "expires_at": ms(0),
			"audience": []any{map[string]any{"kind": kind, "within_days": withinDays}},
			"message":  map[string]any{"text": "t", "cta_label": nil, "cta_url": nil},
		}
	}
	var ourCampaignID int
	if b, err := s.AppendCampaign(nil, &schemas.Campaign{}); err != nil {
		t.Fatalf("AppendCampaign: %v", err)
	} else {
		ourCampaignID = schemaID(t, b)
	}

	interaction := func(b []byte) error { _, err := s.DecodeInteraction(b); return err }
	decodeCampaign := func(b []byte) error { _, err := s.DecodeCampaign(b); return err }
	decodeInbox := func(b []byte) error { _, err := s.DecodeInbox(b); return err }

	for _, tc := range []struct {
		name   string
		decode func([]byte) error
		in     []byte
		reason deadletter.Reason
		id     int // want DecodeError.SchemaID
	}{
		{"nil", interaction, nil, deadletter.ReasonNotWireFormat, -1},
		{"empty", interaction, []byte{}, deadletter.ReasonNotWireFormat, -1},
		{"1 byte", interaction, []byte{0}, deadletter.ReasonNotWireFormat, -1},
		{"2 bytes", interaction, []byte{0, 0}, deadletter.ReasonNotWireFormat, -1},
		{"3 bytes", interaction, []byte{0, 0, 0}, deadletter.ReasonNotWireFormat, -1},
		{"4 bytes", interaction, valid[:4], deadletter.ReasonNotWireFormat, -1},
		{"magic 1", interaction, append([]byte{1}, valid[1:]...), deadletter.ReasonNotWireFormat, -1},
		{"plain JSON", interaction, []byte(`{"event_id":"e"}`), deadletter.ReasonNotWireFormat, -1},
		{"unknown id", interaction, withID(valid, 9999), deadletter.ReasonUnknownSchema, 9999},
		{"id 0", interaction, withID(valid, 0), deadletter.ReasonUnknownSchema, 0},
		{"negative id", interaction, withID(valid, -5), deadletter.ReasonUnknownSchema, -5},
		{"inbox id in interactions", interaction, withID(valid, inboxID), deadletter.ReasonIncompatibleSchema, inboxID},
		{"interaction id in inbox", decodeInbox, withID(inbox, interactionID), deadletter.ReasonIncompatibleSchema, interactionID},
		{"interaction id in campaigns", decodeCampaign, valid, deadletter.ReasonIncompatibleSchema, interactionID},
		{"unknown enum symbol", interaction, withID(valid, newKindID), deadletter.ReasonIncompatibleSchema, newKindID},
		{"writer lacks required field", interaction, withID(valid, noEventIDID), deadletter.ReasonIncompatibleSchema, noEventIDID},
		{"unpromotable type", interaction, withID(valid, stringTimeID), deadletter.ReasonIncompatibleSchema, stringTimeID},
		{"JSON schema id", interaction, withID(valid, jsonID), deadletter.ReasonIncompatibleSchema, jsonID},
		{"header only", interaction, valid[:5], deadletter.ReasonMalformed, interactionID},
		{"truncated avro", interaction, valid[:len(valid)-1], deadletter.ReasonMalformed, interactionID},
		{"truncated in a string", interaction, valid[:7], deadletter.ReasonMalformed, interactionID},
		{"trailing garbage", interaction, append(append([]byte{}, valid...), 0xde, 0xad), deadletter.ReasonMalformed, interactionID},
		{"trailing zero byte", interaction, append(append([]byte{}, valid...), 0), deadletter.ReasonMalformed, interactionID},
		{"enum index out of range", interaction, withID([]byte{0, 0, 0, 0, 0, 2, 'e', 2, 'u', 2, 'b', 40, 14}, interactionID), deadletter.ReasonMalformed, interactionID},
		{"negative string length", interaction, withID([]byte{0, 0, 0, 0, 0, 1, 'e'}, interactionID), deadletter.ReasonMalformed, interactionID},
		{"huge string length", interaction, withID([]byte{0, 0, 0, 0, 0, 0xfe, 0xff, 0xff, 0xff, 0x0f, 'e'}, interactionID), deadletter.ReasonMalformed, interactionID},
		{"huge audience count", decodeCampaign, withID([]byte{0, 0, 0, 0, 0, 2, 'c', 2, 'b', 0, 0, 0, 0xfe, 0xff, 0xff, 0xff, 0x0f}, ourCampaignID), deadletter.ReasonMalformed, ourCampaignID},
		{"audience kind BUSINESS_MESSAGE", decodeCampaign, goavroWire(t, anyKind, anyKindID, campaign("BUSINESS_MESSAGE", 1)), deadletter.ReasonIncompatibleSchema, anyKindID},
		{"audience negative within_days", decodeCampaign, goavroWire(t, schemas.CampaignSchema(), ourCampaignID, campaign("USER_MESSAGE", -1)), deadletter.ReasonInvalidValue, ourCampaignID},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.decode(tc.in)
			de := mustDecodeError(t, err, tc.reason)
			t.Log(err)
			if de.SchemaID != tc.id {
				t.Fatalf("SchemaID: got %d, want %d (%v)", de.SchemaID, tc.id, err)
			}
			if de.Err == nil || errors.Unwrap(err) != de.Err {
				t.Fatalf("want Unwrap to give the cause, got %v", errors.Unwrap(err))
			}
		})
	}
}

func TestRegistryDown(t *testing.T) {
	reg, rc := newRegistry(t)
	s := newSerde(t, rc)
	valid, err := s.AppendInteraction(nil, &schemas.Interaction{EventID: "e"})
	if err != nil {
		t.Fatalf("AppendInteraction: %v", err)
	}
	other := register(t, reg, "interactions-value", evolve(t, schemas.InteractionSchema(), func(rec map[string]any) {
		addField(rec, 0, map[string]any{"name": "x", "type": "int", "default": 1})
	}))
	reg.Close()

	unknown := binary.BigEndian.AppendUint32([]byte{0}, uint32(other))
	unknown = append(unknown, valid[5:]...)
	_, err = s.DecodeInteraction(unknown)
	if err == nil {
		t.Fatalf("decode with an uncached id while the registry is down: want an error, got none")
	}
	var de *wire.DecodeError
	if errors.As(err, &de) {
		t.Fatalf("registry down: want a plain error (retry), got a DecodeError: %v", err)
	}
	// Our own schema needs no registry.
	if _, err := s.DecodeInteraction(valid); err != nil {
		t.Fatalf("decode with our own id while the registry is down: %v", err)
	}

	bad, err := sr.NewClient(sr.URLs("http://127.0.0.1:1"))
	if err != nil {
		t.Fatalf("sr.NewClient: %v", err)
	}
	if _, err := wire.New(context.Background(), bad, defaultTopics); err == nil || errors.As(err, &de) {
		t.Fatalf("NewSerde on an unreachable registry: want a plain error, got %v", err)
	}
}

// TestConcurrentDecode has many goroutines meet a new writer id at once.
func TestConcurrentDecode(t *testing.T) {
	reg, rc := newRegistry(t)
	s := newSerde(t, rc)
	schema := evolve(t, schemas.InteractionSchema(), func(rec map[string]any) {
		addField(rec, 0, map[string]any{"name": "x", "type": "long", "default": 0})
	})
	id := register(t, reg, "interactions-value", schema)
	b := goavroWire(t, schema, id, map[string]any{
		"x": 5, "event_id": "e", "user_id": "u", "business_id": "b", "kind": "UNBLOCK", "occurred_at": ms(9),
	})
	want := schemas.Interaction{EventID: "e", UserID: "u", BusinessID: "b", Kind: schemas.Unblock, OccurredAt: ms(9)}
	var wg sync.WaitGroup
	errs := make(chan error, 16)
	for range 16 {
		wg.Go(func() {
			for range 50 {
				got, err := s.DecodeInteraction(b)
				if err != nil {
					errs <- err
					return
				}
				if got != want {
					errs <- errors.New("decoded value differs")
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Errorf("concurrent decode: %v", err)
	}
}

func BenchmarkInteraction(b *testing.B) {
	_, rc := newRegistry(b)
	s := newSerde(b, rc)
	in := schemas.Interaction{EventID: "01J9Z3K7Q8", UserID: "user-123456", BusinessID: "biz-42", Kind: schemas.BotCTAClick, OccurredAt: ms(1_700_000_000_123)}
	buf, err := s.AppendInteraction(nil, &in)
	if err != nil {
		b.Fatalf("AppendInteraction: %v", err)
	}
	b.Run("decode", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := s.DecodeInteraction(buf); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("append", func(b *testing.B) {
		b.ReportAllocs()
		dst := make([]byte, 0, 64)
		for b.Loop() {
			if _, err := s.AppendInteraction(dst[:0], &in); err != nil {
				b.Fatal(err)
			}
		}
	})
}

func TestRoundTripDecision(t *testing.T) {
	_, rc := newRegistry(t)
	s, err := wire.New(context.Background(), rc, wire.Topics{Interactions: "interactions", Campaigns: "campaigns", Inbox: "inbox", Decisions: "decisions"})
	if err != nil {
		t.Fatalf("New with decisions: %v", err)
	}
	// The per-candidate form.
	for o := range schemas.Outcome(len(schemas.Outcomes)) {
		want := schemas.Decision{DeliveryID: "d-" + o.String(), UserID: "u1", BusinessID: "b1", CampaignID: "c1", Outcome: o, DecidedAsOf: ms(1_700_000_000_123)}
		b, err := s.AppendDecision(nil, &want)
		if err != nil {
			t.Fatalf("AppendDecision(%s): %v", o, err)
		}
		got, err := s.DecodeDecisions(nil, b)
		if err != nil {
			t.Fatalf("DecodeDecisions(%s): %v", o, err)
		}
		mustEqual(t, "decoded decision", got, []schemas.Decision{want})
		if _, chunk, err := s.DecodeDecisionChunk(b); err != nil || chunk {
			t.Errorf("DecodeDecisionChunk of a per-candidate record: chunk %v, %v; want false, nil", chunk, err)
		}
	}
	// The chunk form: one record, every candidate with its outcome and
	// its derived delivery id.
	c := schemas.DecisionChunk{BusinessID: "b1", CampaignID: "c1", DecidedAsOf: ms(1_700_000_000_123), Partition: 3, After: "u0", Done: true,
		Users: []string{"u1", "u2", "u3"}, Outcomes: []schemas.Outcome{schemas.Delivered, schemas.NotInAudience, schemas.FrequencyBusiness}}
	b, err := s.AppendDecisionChunk(nil, &c)
	if err != nil {
		t.Fatalf("AppendDecisionChunk: %v", err)
	}
	back, chunk, err := s.DecodeDecisionChunk(b)
	if err != nil || !chunk {
		t.Fatalf("DecodeDecisionChunk: chunk %v, %v", chunk, err)
	}
	mustEqual(t, "decoded chunk", back, c)
	got, err := s.DecodeDecisions([]schemas.Decision{{UserID: "kept"}}, b)
	if err != nil {
		t.Fatalf("DecodeDecisions of a chunk: %v", err)
	}
	want := []schemas.Decision{{UserID: "kept"}}
	for i, u := range c.Users {
		want = append(want, schemas.Decision{DeliveryID: schemas.DeliveryID("c1", u), UserID: u, BusinessID: "b1", CampaignID: "c1", Outcome: c.Outcomes[i], DecidedAsOf: c.DecidedAsOf})
	}
	mustEqual(t, "a chunk's decisions", got, want)
	if _, err := s.AppendDecisionChunk(nil, &schemas.DecisionChunk{CampaignID: "c1", Users: []string{"u1"}}); err == nil {
		t.Error("AppendDecisionChunk of 1 user and 0 outcomes: want an error")
	}

	// Without a decisions topic the Serde refuses, and registers nothing.
	plain := newSerde(t, rc)
	if _, err := plain.AppendDecision(nil, &schemas.Decision{}); err == nil {
		t.Fatal("AppendDecision on a Serde without Topics.Decisions: want an error")
	}
	if _, err := plain.AppendDecisionChunk(nil, &c); err == nil {
		t.Fatal("AppendDecisionChunk on a Serde without Topics.Decisions: want an error")
	}
	if _, err := s.DecodeDecisions(nil, []byte{0, 0, 0, 0, 1}); err == nil {
		t.Fatal("DecodeDecisions of a record with another subject's schema: want an error")
	}
}

// TestDecisionChunkGolden pins the chunk form's bytes (after the wire
// header): a change of the schema that moves them breaks every reader of
// the topic's history, and must be a new subject version on purpose.
func TestDecisionChunkGolden(t *testing.T) {
	_, rc := newRegistry(t)
	s, err := wire.New(context.Background(), rc, wire.Topics{Interactions: "interactions", Campaigns: "campaigns", Inbox: "inbox", Decisions: "decisions"})
	if err != nil {
		t.Fatal(err)
	}
	c := schemas.DecisionChunk{BusinessID: "b1", CampaignID: "c1", DecidedAsOf: ms(1_700_000_000_123), Partition: 3, After: "u0", Done: true,
		Users: []string{"u1", "u2"}, Outcomes: []schemas.Outcome{schemas.Delivered, schemas.FrequencyUser}}
	b, err := s.AppendDecisionChunk(nil, &c)
	if err != nil {
		t.Fatal(err)
	}
	const want = "" +
		"00" + "00" + // delivery_id, user_id: empty
		"046231" + "046331" + // business_id "b1", campaign_id "c1"
		"00" + // outcome: DELIVERED (unused)
		"f6a1abfef962" + // decided_as_of 1700000000123, zigzag varint
		"06" + // partition 3
		"047530" + // chunk_after "u0"
		"01" + // fanout_done true
		"04" + "047531" + "047532" + "00" + // users: a block of 2, then the end
		"04" + "00" + "0e" + "00" // outcomes: DELIVERED, FREQUENCY_USER
	if got := hex.EncodeToString(b[5:]); got != want {
		t.Errorf("chunk record body\n got  %s\n want %s", got, want)
	}
}

// TestDecodeDecisionsVersion1 reads records written with the decisions
// subject's version 1 schema (the per-candidate form, before chunks), as a
// topic's history holds them, with the reader of version 2.
func TestDecodeDecisionsVersion1(t *testing.T) {
	reg, rc := newRegistry(t)
	v1, err := os.ReadFile("testdata/decision_v1.avsc")
	if err != nil {
		t.Fatal(err)
	}
	id := register(t, reg, "decisions-value", string(v1))
	s, err := wire.New(context.Background(), rc, wire.Topics{Interactions: "interactions", Campaigns: "campaigns", Inbox: "inbox", Decisions: "decisions"})
	if err != nil {
		t.Fatalf("New over a subject with version 1: %v", err)
	}
	b := goavroWire(t, string(v1), id, map[string]any{
		"delivery_id": "d1", "user_id": "u1", "business_id": "b1", "campaign_id": "c1",
		"outcome": "OPTED_OUT", "decided_as_of": ms(1_700_000_000_123),
	})
	got, err := s.DecodeDecisions(nil, b)
	if err != nil {
		t.Fatalf("DecodeDecisions of a version 1 record: %v", err)
	}
	mustEqual(t, "version 1 decision", got, []schemas.Decision{{DeliveryID: "d1", UserID: "u1", BusinessID: "b1", CampaignID: "c1", Outcome: schemas.OptedOut, DecidedAsOf: ms(1_700_000_000_123)}})
	// Version 2 is FULL compatible with version 1: a registry with
	// BACKWARD (its default) or FULL compatibility takes it as the
	// subject's next version.
	problems, err := compat.Check(schemas.DecisionSchema(), string(v1))
	if err != nil || len(problems) > 0 {
		t.Errorf("version 2 against version 1: %v, %v; want FULL compatible", problems, err)
	}
}

// TestDecodeInteractionFastPath checks that a record written by the Serde,
// with our own schema id as registered, is one the fast decoder takes, and
// that DecodeInteraction reads it back.
func TestDecodeInteractionFastPath(t *testing.T) {
	_, rc := newRegistry(t)
	s := newSerde(t, rc)
	in := schemas.Interaction{EventID: "e", UserID: "u", BusinessID: "b", Kind: schemas.BotStarted, OccurredAt: ms(1_700_000_000_123)}
	b, err := s.AppendInteraction(nil, &in)
	if err != nil {
		t.Fatal(err)
	}
	got, err := s.DecodeInteraction(b)
	if err != nil || !reflect.DeepEqual(got, in) {
		t.Fatalf("DecodeInteraction = %+v, %v; want %+v", got, err, in)
	}
	if !wire.TakesFastPath(s, b) {
		t.Errorf("a record of our own schema (% x) does not take the fast path", b)
	}
}
