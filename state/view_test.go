package state

import (
	"errors"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/sponsored/sponsor/policy"
	"github.com/sponsored/sponsor/schemas"
)

func ms(s string) policy.Millis {
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		panic(err)
	}
	return t.UnixMilli()
}

// TestUserView writes a contact history through a Batch as a task does and
// wants User to decode it: times in UTC, the block, the delivery with its
// campaign, the recipient record, the expiry as of the task time, and
// nothing of what was not committed.
func TestUserView(t *testing.T) {
	s := open(t)
	b := s.NewBatch(3)
	alice := policy.Contact{}
	alice.Apply(schemas.UserMessage, ms("2025-03-01T10:00:00Z"))
	alice.Apply(schemas.Block, ms("2025-03-02T10:00:00Z"))
	bob := policy.Contact{LastSent: ms("2025-03-05T12:00:00Z")}
	bob.Apply(schemas.BotStarted, ms("2025-03-01T09:00:00Z"))
	bob.Apply(schemas.SponsoredOptOut, ms("2025-03-01T09:30:00Z"))
	bob.Apply(schemas.SponsoredOptIn, ms("2025-03-01T09:40:00Z"))
	old := policy.Contact{}
	old.Apply(schemas.UserMessage, ms("2023-01-01T00:00:00Z"))
	for biz, c := range map[string]*policy.Contact{"biz-a": &alice, "biz-b": &bob, "biz-old": &old} {
		if err := b.PutContact("u1", biz, c, false); err != nil {
			t.Fatal(err)
		}
	}
	if err := b.PutContact("u10", "biz-a", &alice, false); err != nil { // a user whose id extends u1's
		t.Fatal(err)
	}
	if err := b.PutRecipient("u1", &policy.Recipient{Sent: []policy.Millis{ms("2025-03-05T12:00:00Z")}}); err != nil {
		t.Fatal(err)
	}
	fired := policy.Progress{Campaign: policy.Campaign{ID: "camp-b", Business: "biz-b", SendAt: ms("2025-03-05T12:00:00Z")}, Status: policy.Fired, FireAt: ms("2025-03-05T12:00:00Z")}
	other := policy.Progress{Campaign: policy.Campaign{ID: "camp-a", Business: "biz-a", SendAt: ms("2025-03-05T12:00:00Z")}, Status: policy.Fired, FireAt: ms("2025-03-05T12:00:00Z")}
	for _, p := range []*policy.Progress{&fired, &other} {
		if err := b.PutCampaign(p); err != nil {
			t.Fatal(err)
		}
	}
	if err := b.PutMeta(&policy.Meta{Input: 17, Time: ms("2025-03-06T00:00:00Z")}); err != nil {
		t.Fatal(err)
	}
	if err := b.Commit(40); err != nil {
		t.Fatal(err)
	}
	// Uncommitted: not shown.
	pending := s.NewBatch(3)
	defer pending.Close()
	if err := pending.PutContact("u1", "biz-pending", &alice, false); err != nil {
		t.Fatal(err)
	}
	if err := pending.PutContact("u2", "biz-a", &alice, false); err != nil {
		t.Fatal(err)
	}

	v, err := s.User("u1", "", defaultPolicy(t))
	if err != nil {
		t.Fatal(err)
	}
	if len(v.Partitions) != 1 {
		t.Fatalf("partitions: got %+v, want one", v.Partitions)
	}
	pv := v.Partitions[0]
	if pv.Partition != 3 || pv.Checkpoint != 40 || pv.InputOffset != 17 || pv.TaskTime == nil || !pv.TaskTime.Equal(time.UnixMilli(ms("2025-03-06T00:00:00Z"))) {
		t.Errorf("partition: got %+v", pv)
	}
	var bizs []string
	for _, c := range pv.Contacts {
		bizs = append(bizs, c.Business)
	}
	if !slices.Equal(bizs, []string{"biz-a", "biz-b", "biz-old"}) {
		t.Fatalf("contacts: got %v, want biz-a, biz-b, biz-old", bizs)
	}
	a, bb, o := pv.Contacts[0], pv.Contacts[1], pv.Contacts[2]
	if !a.Blocked || a.BlockedSince == nil || a.BlockedSince.Format(time.RFC3339) != "2025-03-02T10:00:00Z" || a.UnblockedSince != nil ||
		a.LastInteraction["USER_MESSAGE"].Format(time.RFC3339) != "2025-03-01T10:00:00Z" || len(a.LastInteraction) != 1 || a.Expired {
		t.Errorf("biz-a: got %+v", a)
	}
	if bb.OptedOut || bb.OptedInSince == nil || bb.OptedInSince.Format(time.RFC3339) != "2025-03-01T09:40:00Z" || bb.Blocked ||
		bb.LastSent == nil || bb.LastInteraction["BOT_STARTED"].IsZero() {
		t.Errorf("biz-b: got %+v", bb)
	}
	if !o.Expired {
		t.Errorf("biz-old: got %+v, want expired (2023 is older than 365 days before the task time)", o)
	}
	if len(pv.Deliveries) != 1 || pv.Deliveries[0].Business != "biz-b" || !slices.Equal(pv.Deliveries[0].Campaigns, []string{"camp-b"}) ||
		pv.Deliveries[0].SentAt.Format(time.RFC3339) != "2025-03-05T12:00:00Z" || !pv.Deliveries[0].InWindow {
		t.Errorf("deliveries: got %+v, want camp-b of biz-b at 2025-03-05T12:00:00Z, in the window", pv.Deliveries)
	}
	if len(pv.RecipientSentAt) != 1 || pv.RecipientSentAt[0].Location() != time.UTC {
		t.Errorf("recipient: got %v", pv.RecipientSentAt)
	}

	v, err = s.User("u1", "biz-b", defaultPolicy(t))
	if err != nil || len(v.Partitions) != 1 || len(v.Partitions[0].Contacts) != 1 || v.Partitions[0].Contacts[0].Business != "biz-b" {
		t.Errorf("--business biz-b: got %+v, %v", v, err)
	}

	// With the instance's own rules: a 2-day retention forgets biz-a's
	// contact (its last event is 4 days before the task time), the
	// default does not.
	short, err := policy.New(policy.Config{ContactRetention: 48 * time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	v, err = s.User("u1", "biz-a", short)
	if err != nil || len(v.Partitions) != 1 || len(v.Partitions[0].Contacts) != 1 || !v.Partitions[0].Contacts[0].Expired || v.ContactRetention != "48h0m0s" {
		t.Errorf("with a 48h retention: got %+v, %v; want biz-a expired and the retention shown", v, err)
	}

	for _, u := range []string{"u2", "u", "nobody"} {
		_, err = s.User(u, "", defaultPolicy(t))
		var nf *NotFoundError
		if !errors.As(err, &nf) || !slices.Equal(nf.Partitions, []int32{3}) {
			t.Errorf("User(%q): got %v, want a NotFoundError listing partition 3", u, err)
		} else if want := "user " + u + " is not in this state (partitions 3)"; err.Error() != want {
			t.Errorf("User(%q): got %q, want %q", u, err, want)
		}
	}
}

// TestLocked wants a second Open, and a read-only one, of a folder in use
// to fail with ErrLocked, and a read-only open to work once it is closed.
func TestLocked(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "pebble")
	s, err := Open(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Open(dir, Options{}); !errors.Is(err, ErrLocked) {
		t.Errorf("second Open: got %v, want ErrLocked", err)
	}
	if _, err := OpenReadOnly(dir, Options{}); !errors.Is(err, ErrLocked) {
		t.Errorf("OpenReadOnly: got %v, want ErrLocked", err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	ro, err := OpenReadOnly(dir, Options{})
	if err != nil {
		t.Fatalf("OpenReadOnly after Close: %v", err)
	}
	if err := ro.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := OpenReadOnly(filepath.Join(t.TempDir(), "none"), Options{}); err == nil || errors.Is(err, ErrLocked) {
		t.Errorf("OpenReadOnly of a missing folder: got %v, want a not-exist error", err)
	}
}

// defaultPolicy is the rules with the default config, for the views.
func defaultPolicy(t testing.TB) *policy.Policy {
	t.Helper()
	pol, err := policy.New(policy.DefaultConfig())
	if err != nil {
		t.Fatal(err)
	}
	return pol
}
