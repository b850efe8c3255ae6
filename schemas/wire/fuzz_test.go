package wire_test

import (
	"errors"
	"reflect"
	"testing"

	"github.com/sponsored/sponsor/schemas"
	"github.com/sponsored/sponsor/schemas/wire"
)

// FuzzDecodeInteraction feeds arbitrary bytes to every decoder: none may
// panic, every failure must be a DecodeError (the registry is up), and what
// decodes must survive an encode/decode round trip unchanged.
func FuzzDecodeInteraction(f *testing.F) {
	reg, rc := newRegistry(f)
	s := newSerde(f, rc)

	in := schemas.Interaction{EventID: "e", UserID: "u", BusinessID: "b", Kind: schemas.BotCTAClick, OccurredAt: ms(1_700_000_000_123)}
	valid, err := s.AppendInteraction(nil, &in)
	if err != nil {
		f.Fatalf("AppendInteraction: %v", err)
	}
	campaign, err := s.AppendCampaign(nil, &schemas.Campaign{
		CampaignID: "c", Audience: []schemas.AudienceRule{{Kind: schemas.BotStarted, WithinDays: 3}},
		Message: schemas.Message{Text: "t", CTALabel: ptr("l")},
	})
	if err != nil {
		f.Fatalf("AppendCampaign: %v", err)
	}
	inbox, err := s.AppendInbox(nil, &schemas.InboxMessage{DeliveryID: "d", Message: schemas.Message{CTAURL: ptr("u")}})
	if err != nil {
		f.Fatalf("AppendInbox: %v", err)
	}
	evolved := evolve(f, schemas.InteractionSchema(), func(rec map[string]any) {
		addField(rec, 1, map[string]any{"name": "tags", "type": map[string]any{"type": "array", "items": "string"}, "default": []any{}})
	})
	evolvedID := register(f, reg, "interactions-value", evolved)
	for _, seed := range [][]byte{
		nil, {0}, {0, 0, 0, 0, 1}, {1, 0, 0, 0, 1, 0},
		valid, valid[:len(valid)-1], append(append([]byte{}, valid...), 0),
		campaign, inbox,
		goavroWire(f, evolved, evolvedID, map[string]any{
			"event_id": "e", "tags": []any{"a", "b"}, "user_id": "u", "business_id": "b",
			"kind": "USER_ERASED", "occurred_at": ms(1),
		}),
	} {
		f.Add(seed)
	}

	f.Fuzz(func(t *testing.T, b []byte) {
		checkFuzz(t, "interaction", b, s.DecodeInteraction, s.AppendInteraction)
		checkFuzz(t, "campaign", b, s.DecodeCampaign, s.AppendCampaign)
		checkFuzz(t, "inbox", b, s.DecodeInbox, s.AppendInbox)
	})
}

func checkFuzz[T any](t *testing.T, what string, b []byte, decode func([]byte) (T, error), appendTo func([]byte, *T) ([]byte, error)) {
	t.Helper()
	v, err := decode(b)
	if err != nil {
		var de *wire.DecodeError
		if !errors.As(err, &de) {
			t.Fatalf("decode %s % x: want a *DecodeError, got %T: %v", what, b, err, err)
		}
		return
	}
	again, err := appendTo(nil, &v)
	if err != nil {
		t.Fatalf("re-encode decoded %s %+v: %v", what, v, err)
	}
	v2, err := decode(again)
	if err != nil {
		t.Fatalf("decode re-encoded %s % x: %v", what, again, err)
	}
	if !reflect.DeepEqual(v, v2) {
		t.Fatalf("%s round trip:\n first  %+v\n second %+v", what, v, v2)
	}
}
