package wire_test

import (
	"testing"

	"github.com/sponsored/sponsor/schemas"
)

// BenchmarkInbox encodes an inbox message with the library (into a fresh
// slice and into a reused one) and with a campaign's template, as a fan-out
// does for every delivery, and decodes it as a downstream reader would.
func BenchmarkInbox(b *testing.B) {
	_, rc := newRegistry(b)
	s := newSerde(b, rc)
	label, url := "Shop now", "https://example.com/spring"
	m := schemas.InboxMessage{
		DeliveryID: "3f9a0c1e5b7d2a4c6e8f0a1b2c3d4e5f", UserID: "user-0123456", BusinessID: "biz-42", CampaignID: "camp-000123",
		SentAt:  ms(1_767_225_600_000),
		Message: schemas.Message{Text: "Our spring sale starts today: 20% off everything.", CTALabel: &label, CTAURL: &url},
	}
	buf, err := s.AppendInbox(nil, &m)
	if err != nil {
		b.Fatalf("AppendInbox: %v", err)
	}
	b.Run("append-nil", func(b *testing.B) {
		b.ReportAllocs()
		b.ReportMetric(float64(len(buf)), "bytes/record")
		for b.Loop() {
			if _, err := s.AppendInbox(nil, &m); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("append-reused", func(b *testing.B) {
		b.ReportAllocs()
		dst := make([]byte, 0, 256)
		for b.Loop() {
			if _, err := s.AppendInbox(dst[:0], &m); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("template", func(b *testing.B) {
		b.ReportAllocs()
		tpl, err := s.InboxTemplate(&m)
		if err != nil {
			b.Fatal(err)
		}
		dst := make([]byte, 0, 256)
		for b.Loop() {
			dst = tpl.Append(dst[:0], m.DeliveryID, m.UserID)
		}
	})
	b.Run("decode", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := s.DecodeInbox(buf); err != nil {
				b.Fatal(err)
			}
		}
	})
}
