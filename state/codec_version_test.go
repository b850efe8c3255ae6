package state

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"math/rand/v2"
	"reflect"
	"testing"

	"github.com/sponsored/sponsor/policy"
	"github.com/sponsored/sponsor/schemas"
)

// appendContactV1 is AppendContact as versions before contact version 2
// wrote it: every time in full, zeros included. It stands for the records
// of a changelog an earlier version wrote.
func appendContactV1(dst []byte, c *policy.Contact) []byte {
	e := encoder{dst}
	e.byte(1)
	var flags byte
	if c.Blocked {
		flags |= flagBlocked
	}
	if c.OptedOut {
		flags |= flagOptedOut
	}
	e.byte(flags)
	for _, t := range c.Last {
		e.int(t)
	}
	e.int(c.BlockAt)
	e.int(c.OptAt)
	e.int(c.LastSent)
	if len(c.Recent) > 0 {
		e.uint(uint64(len(c.Recent)))
		for _, r := range c.Recent {
			e.byte(byte(r.Kind))
			e.int(r.At)
		}
	}
	return e.b
}

// randomContact is a contact with any subset of its times set (negative
// ones too, as in tests of the policy), any flags, and sometimes recent
// interactions.
func randomContact(rng *rand.Rand) policy.Contact {
	t := func() policy.Millis {
		switch rng.IntN(4) {
		case 0:
			return 0
		case 1:
			return rng.Int64N(1000) - 500
		default:
			return 1_700_000_000_000 + rng.Int64N(400*policy.Day)
		}
	}
	c := policy.Contact{Last: [3]policy.Millis{t(), t(), t()}, Blocked: rng.IntN(3) == 0, BlockAt: t(),
		OptedOut: rng.IntN(3) == 0, OptAt: t(), LastSent: t()}
	for range rng.IntN(3) {
		c.Recent = append(c.Recent, policy.Event{Kind: schemas.InteractionKind(rng.IntN(len(schemas.InteractionKinds))), At: t()})
	}
	return c
}

// realistic reports whether every time of c is zero or of this century.
func realistic(c *policy.Contact) bool {
	for _, t := range contactTimes(c) {
		if *t != 0 && *t < 1_000_000_000_000 {
			return false
		}
	}
	return true
}

// TestContactVersionsDecodeAlike: a contact decodes to itself from the
// encoding of either version, and version 2 is never longer when the
// times are real ones.
func TestContactVersionsDecodeAlike(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 7))
	for i := range 5000 {
		c := randomContact(rng)
		v1, v2 := appendContactV1(nil, &c), AppendContact(nil, &c)
		for name, b := range map[string][]byte{"version 1": v1, "version 2": v2} {
			got, err := DecodeContact(b)
			if err != nil || !reflect.DeepEqual(got, c) {
				t.Fatalf("contact %d from %s (%x): got %+v, %v; want %+v", i, name, b, got, err, c)
			}
		}
		// Times of one contact are near each other in real data; the
		// small ones here are the policy tests' (next to real ones, a
		// difference can take more bytes than the small time itself).
		if realistic(&c) && len(v2) > len(v1) {
			t.Fatalf("contact %+v: version 2 takes %d bytes, version 1 %d", c, len(v2), len(v1))
		}
	}
}

// TestContactEncodingGolden pins both versions' bytes: version 1 as
// earlier versions wrote it (and DecodeContact must read for ever), version
// 2 as AppendContact writes it now.
func TestContactEncodingGolden(t *testing.T) {
	const at = 1_780_000_000_000
	for _, tc := range []struct {
		name   string
		c      policy.Contact
		v1, v2 string
	}{
		{"one user message", policy.Contact{Last: [3]policy.Millis{at}},
			"01 00 80a0a484ce67 00 00 00 00 00", "02 04 80a0a484ce67"},
		{"a message and a delivery a day later", policy.Contact{Last: [3]policy.Millis{at}, LastSent: at + policy.Day},
			"01 00 80a0a484ce67 00 00 00 00 8090d7d6ce67", "02 84 80a0a484ce67 80f0b252"},
		{"blocked, no time", policy.Contact{Blocked: true},
			"01 01 00 00 00 00 00 00", "02 01"},
		{"opted out at -5, a recent click", policy.Contact{OptedOut: true, OptAt: -5, Recent: []policy.Event{{Kind: schemas.BotCTAClick, At: 3}}},
			"01 02 00 00 00 00 09 00 01 02 06", "02 42 09 01 02 06"},
	} {
		v1, v2 := hex.EncodeToString(appendContactV1(nil, &tc.c)), hex.EncodeToString(AppendContact(nil, &tc.c))
		want1, want2 := stripSpaces(tc.v1), stripSpaces(tc.v2)
		if v1 != want1 {
			t.Fatalf("%s: the test's version 1 encoder gives %s, want %s", tc.name, v1, want1)
		}
		if v2 != want2 {
			t.Errorf("%s: version 2 encodes as %s, want %s", tc.name, v2, want2)
		}
		for _, enc := range []string{want1, want2} {
			b, err := hex.DecodeString(enc)
			if err != nil {
				t.Fatal(err)
			}
			if got, err := DecodeContact(b); err != nil || !reflect.DeepEqual(got, tc.c) {
				t.Errorf("%s: %s decodes to %+v, %v; want %+v", tc.name, enc, got, err, tc.c)
			}
		}
	}
}

func stripSpaces(s string) string {
	out := make([]byte, 0, len(s))
	for i := range len(s) {
		if s[i] != ' ' {
			out = append(out, s[i])
		}
	}
	return string(out)
}

// TestContactVersion2RejectsCorrupt: what version 2 cannot have written.
func TestContactVersion2RejectsCorrupt(t *testing.T) {
	c := policy.Contact{Last: [3]policy.Millis{1_780_000_000_000, 0, 1_780_000_100_000}}
	good := AppendContact(nil, &c)
	for name, b := range map[string][]byte{
		"only the version":       {contactVersion},
		"a time missing":         good[:len(good)-3],
		"a present time of zero": {contactVersion, 1 << 2, 0},
		// Last[0] = 10, Last[1] = 10 + (-10): marked present, zero.
		"a later time adding to zero": {contactVersion, 1<<2 | 1<<3, 20, 19},
		"version 1 with presence":     append([]byte{valueVersion, 1 << 2}, make([]byte, 6)...),
		"version 3":                   append([]byte{3}, good[1:]...),
	} {
		if _, err := DecodeContact(b); !errors.Is(err, ErrCorrupt) {
			t.Errorf("%s (%x): got %v, want ErrCorrupt", name, b, err)
		}
	}
}

// TestOldChangelogRestoresTheSameState: a changelog whose contact records
// an earlier version wrote (contact version 1) restores, through the batch
// restore and through the ingest alike, to the state the same contacts
// written now give: every contact reads back equal, the fan-out's scan
// included. A contact written again after the restore is written in
// version 2 and still reads the same.
func TestOldChangelogRestoresTheSameState(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 3))
	type pair struct{ user, business string }
	want := map[pair]policy.Contact{}
	var old []Change
	for i := range 2000 {
		p := pair{fmt.Sprintf("user-%04d", rng.IntN(500)), fmt.Sprintf("biz-%02d", i%7)}
		c := randomContact(rng)
		c.Last[0] = max(c.Last[0], 1) // a contact (any record would do: the store does not judge)
		want[p] = c
		old = append(old, Change{Key: ContactChangelogKey(p.user, p.business), Value: appendContactV1(nil, &c)})
	}

	current := open(t)
	b := current.NewBatch(0)
	for p, c := range want {
		if err := b.PutContact(p.user, p.business, &c, false); err != nil {
			t.Fatal(err)
		}
	}
	if err := b.Commit(1); err != nil {
		t.Fatal(err)
	}
	batchRestored := open(t)
	restoreChanges(t, batchRestored, 0, old)
	ingested := open(t)
	in := ingested.NewIngester(0, true)
	for _, ch := range old {
		if err := in.Add(ch.Key, ch.Value); err != nil {
			t.Fatal(err)
		}
	}
	if err := in.Finish(context.Background(), int64(len(old))); err != nil {
		t.Fatal(err)
	}
	in.Close()

	for name, s := range map[string]*Store{"written now": current, "restored": batchRestored, "ingested": ingested} {
		rb := s.NewBatch(0)
		for p, c := range want {
			got, ok, err := rb.Contact(p.user, p.business)
			if err != nil || !ok || !reflect.DeepEqual(got, c) {
				t.Fatalf("%s: contact %v = %+v, %v, %v; want %+v", name, p, got, ok, err, c)
			}
		}
		n := 0
		for biz := range 7 {
			_, _, err := rb.Audience(fmt.Sprintf("biz-%02d", biz), "", 1<<20, func(u string, c *policy.Contact) error {
				n++
				if w := want[pair{u, fmt.Sprintf("biz-%02d", biz)}]; !reflect.DeepEqual(*c, w) {
					return fmt.Errorf("audience gives %s %+v, want %+v", u, *c, w)
				}
				return nil
			})
			if err != nil {
				t.Fatalf("%s: %v", name, err)
			}
		}
		if n != len(want) {
			t.Fatalf("%s: the audiences hold %d contacts, want %d", name, n, len(want))
		}
		rb.Close()
	}

	// Written again, the old record's contact takes version 2.
	rb := ingested.NewBatch(0)
	defer rb.Close()
	for p, c := range want {
		if err := rb.PutContact(p.user, p.business, &c, true); err != nil {
			t.Fatal(err)
		}
		ch := rb.Changes()[0]
		if ch.Value[0] != contactVersion {
			t.Fatalf("rewritten contact has version %d, want %d", ch.Value[0], contactVersion)
		}
		got, ok, err := rb.Contact(p.user, p.business)
		if err != nil || !ok || !reflect.DeepEqual(got, c) {
			t.Fatalf("rewritten contact %v = %+v, %v, %v; want %+v", p, got, ok, err, c)
		}
		break
	}
}
