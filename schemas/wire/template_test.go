package wire_test

import (
	"bytes"
	"context"
	"reflect"
	"strings"
	"testing"

	"github.com/sponsored/sponsor/schemas"
	"github.com/sponsored/sponsor/schemas/wire"
)

// templateIDs are (delivery id, user id) pairs around the one-byte/two-byte
// boundary of a length's varint.
var templateIDs = [][2]string{
	{"", ""},
	{"3f9a0c1e5b7d2a4c6e8f0a1b2c3d4e5f", "user-0123456"},
	{strings.Repeat("d", 63), strings.Repeat("u", 64)},
	{strings.Repeat("d", 200), "ü"},
}

// TestInboxTemplate checks that a template encodes each inbox record byte for
// byte as the library does, with and without the message's optional fields.
func TestInboxTemplate(t *testing.T) {
	_, rc := newRegistry(t)
	s := newSerde(t, rc)
	for _, msg := range []schemas.Message{
		{Text: "Spring sale"},
		{Text: strings.Repeat("x", 500), CTALabel: ptr("Shop"), CTAURL: ptr("https://example.com")},
		{CTAURL: ptr("")},
	} {
		m := schemas.InboxMessage{DeliveryID: "ignored", UserID: "ignored", BusinessID: "biz-42", CampaignID: "camp-1", SentAt: ms(1_767_225_600_000), Message: msg}
		tpl, err := s.InboxTemplate(&m)
		if err != nil {
			t.Fatalf("InboxTemplate: %v", err)
		}
		for _, ids := range templateIDs {
			m.DeliveryID, m.UserID = ids[0], ids[1]
			want, err := s.AppendInbox(nil, &m)
			if err != nil {
				t.Fatalf("AppendInbox: %v", err)
			}
			prefix := []byte("kept")
			got := tpl.Append(prefix, ids[0], ids[1])
			if !bytes.Equal(got[:4], []byte("kept")) || !bytes.Equal(got[4:], want) {
				t.Errorf("template of %+v for %q, %q:\n got  % x\n want kept % x", msg, ids[0], ids[1], got, want)
			}
			back, err := s.DecodeInbox(got[4:])
			if err != nil || !reflect.DeepEqual(back, m) {
				t.Errorf("decode of the template's record: %+v, %v; want %+v", back, err, m)
			}
		}
	}
}

// TestDecisionTemplate checks the decision template against the library for
// every outcome.
func TestDecisionTemplate(t *testing.T) {
	_, rc := newRegistry(t)
	s, err := wire.New(context.Background(), rc, wire.Topics{Interactions: "interactions", Campaigns: "campaigns", Inbox: "inbox", Decisions: "decisions"})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	d := schemas.Decision{BusinessID: "biz-42", CampaignID: "camp-1", DecidedAsOf: ms(1_767_225_600_000)}
	tpl, err := s.DecisionTemplate(&d)
	if err != nil {
		t.Fatalf("DecisionTemplate: %v", err)
	}
	for o := range schemas.Outcome(len(schemas.Outcomes)) {
		for _, ids := range templateIDs {
			d.DeliveryID, d.UserID, d.Outcome = ids[0], ids[1], o
			want, err := s.AppendDecision(nil, &d)
			if err != nil {
				t.Fatalf("AppendDecision: %v", err)
			}
			if got := tpl.Append(nil, ids[0], ids[1], o); !bytes.Equal(got, want) {
				t.Errorf("template for %s, %q, %q:\n got  % x\n want % x", o, ids[0], ids[1], got, want)
			}
		}
	}
	// Without a decisions topic there is nothing to template.
	if _, err := newSerde(t, rc).DecisionTemplate(&d); err == nil {
		t.Error("DecisionTemplate on a Serde without Topics.Decisions: want an error")
	}
}
