package wire

import (
	"errors"
	"reflect"
	"testing"
	"time"

	"github.com/sponsored/sponsor/schemas"
)

// libraryInteraction decodes body as the library does for a record written
// with our own schema.
func libraryInteraction(body []byte) (schemas.Interaction, error) {
	var v schemas.Interaction
	rest, err := interactionReader.Decode(body, (*wireInteraction)(&v))
	if err == nil && len(rest) > 0 {
		err = errTrailing
	}
	return v, err
}

var errTrailing = errors.New("trailing bytes after the record")

func encodeInteraction(t testing.TB, v schemas.Interaction) []byte {
	t.Helper()
	b, err := interactionReader.AppendEncode(nil, (*wireInteraction)(&v))
	if err != nil {
		t.Fatalf("encode %+v: %v", v, err)
	}
	return b
}

// TestFastInteraction checks that the fast decoder reads what the library
// writes, at the edges of each field, and leaves to the library what it must.
func TestFastInteraction(t *testing.T) {
	long := string(make([]byte, 300)) // a two-byte length
	for _, v := range []schemas.Interaction{
		{},
		{EventID: "e", UserID: "u", BusinessID: "b", Kind: schemas.UserErased, OccurredAt: time.UnixMilli(1_700_000_000_123).UTC()},
		{EventID: long, UserID: "ü", BusinessID: "", Kind: schemas.UserMessage, OccurredAt: time.UnixMilli(-1).UTC()},
		{EventID: "e", UserID: long, BusinessID: long, Kind: schemas.SponsoredOptIn, OccurredAt: time.UnixMilli(1 << 61).UTC()},
	} {
		body := encodeInteraction(t, v)
		got, ok := decodeOwnInteraction(body)
		if !ok {
			t.Errorf("fast decode of %x: gave up, want %+v", body, v)
			continue
		}
		if !reflect.DeepEqual(got, v) {
			t.Errorf("fast decode of %x:\n got  %+v\n want %+v", body, got, v)
		}
		// Every truncation and one trailing byte are refused.
		for n := range len(body) {
			if got, ok := decodeOwnInteraction(body[:n]); ok {
				t.Errorf("fast decode of %x (truncated to %d of %d bytes): want no, got %+v", body[:n], n, len(body), got)
			}
		}
		if _, ok := decodeOwnInteraction(append(body, 0)); ok {
			t.Errorf("fast decode of %x with a trailing byte: want no", body)
		}
	}
	// A kind past the enum's symbols, a negative length, a 10-byte long:
	// the library's to judge.
	for name, body := range map[string][]byte{
		"kind out of range": {0, 0, 0, byte(len(schemas.InteractionKinds)) << 1, 0},
		"negative kind":     {0, 0, 0, 1, 0},
		"negative length":   {1, 0, 0, 0, 0},
		"10-byte long":      {0, 0, 0, 0, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x01},
	} {
		if got, ok := decodeOwnInteraction(body); ok {
			t.Errorf("fast decode, %s (%x): want no, got %+v", name, body, got)
		}
	}
}

// FuzzFastInteraction checks that whatever body the fast decoder accepts, the
// library decodes to the same interaction.
func FuzzFastInteraction(f *testing.F) {
	f.Add(encodeInteraction(f, schemas.Interaction{EventID: "e", UserID: "u", BusinessID: "b", Kind: schemas.BotCTAClick, OccurredAt: time.UnixMilli(1_700_000_000_123).UTC()}))
	f.Add([]byte{0, 0, 0, 0x10, 0x80, 0x01})
	f.Add([]byte{0, 0, 0, 0x12, 0})
	f.Add([]byte{0, 0, 0, 0x01, 0})
	f.Fuzz(func(t *testing.T, body []byte) {
		got, ok := decodeOwnInteraction(body)
		if !ok {
			return
		}
		want, err := libraryInteraction(body)
		if err != nil {
			t.Fatalf("fast decode of %x gave %+v; the library refuses it: %v", body, got, err)
		}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("decode of %x:\n fast    %+v\n library %+v", body, got, want)
		}
	})
}

func BenchmarkFastInteraction(b *testing.B) {
	body := encodeInteraction(b, schemas.Interaction{EventID: "01J9Z3K7Q8", UserID: "user-123456", BusinessID: "biz-42", Kind: schemas.BotCTAClick, OccurredAt: time.UnixMilli(1_700_000_000_123).UTC()})
	b.Run("fast", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, ok := decodeOwnInteraction(body); !ok {
				b.Fatal("gave up")
			}
		}
	})
	b.Run("library", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := libraryInteraction(body); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// TestOwn checks which values the fast paths take: wire format with our own
// schema id only.
func TestOwn(t *testing.T) {
	r := &recordSerde{id: 7}
	body := []byte{0, 0, 0, 0, 0}
	for name, tc := range map[string]struct {
		b    []byte
		want bool
	}{
		"our id":         {append([]byte{0, 0, 0, 0, 7}, body...), true},
		"our id, empty":  {[]byte{0, 0, 0, 0, 7}, true},
		"another id":     {append([]byte{0, 0, 0, 0, 8}, body...), false},
		"id 7 << 8":      {append([]byte{0, 0, 0, 7, 0}, body...), false},
		"magic byte 1":   {append([]byte{1, 0, 0, 0, 7}, body...), false},
		"short header":   {[]byte{0, 0, 0, 7}, false},
		"nothing at all": {nil, false},
	} {
		got, ok := r.own(tc.b)
		if ok != tc.want || ok && len(got) != len(tc.b)-headerLen {
			t.Errorf("%s: own(% x) = % x, %v; want %v", name, tc.b, got, ok, tc.want)
		}
	}
}
