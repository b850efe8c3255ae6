package e2e

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"net/http/httptest"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/sponsored/sponsor/pipeline"
	"github.com/sponsored/sponsor/policy"
	"github.com/sponsored/sponsor/schemas"
	"github.com/sponsored/sponsor/state"
)

// stateScenario is a small hand-made history for the state tools:
//
//   - alice messages shop-1, starts shop-2's bot, then blocks shop-2;
//   - bob messages shop-1;
//   - 150 other users message shop-1 or shop-3 (so every partition holds
//     state and the changelog has some size);
//   - camp-1 of shop-1 and camp-2 of shop-2 (every contact) fire a day
//     after the first event, camp-1 before camp-2: camp-1 reaches alice,
//     bob and the others of shop-1; camp-2 reaches nobody (alice blocked).
//
// carol never interacts.
func stateScenario() (scenario, stateFacts) {
	t0 := time.Date(2025, 5, 1, 8, 0, 0, 0, time.UTC)
	f := stateFacts{
		aliceMsg:   t0,
		aliceBot:   t0.Add(time.Minute),
		aliceBlock: t0.Add(2 * time.Hour),
		bobMsg:     t0.Add(5 * time.Minute),
		sendAt:     t0.Add(24 * time.Hour),
	}
	var sc scenario
	ev := func(user, biz string, kind schemas.InteractionKind, at time.Time) {
		sc.Interactions = append(sc.Interactions, schemas.Interaction{
			EventID: fmt.Sprintf("st-%04d", len(sc.Interactions)), UserID: user, BusinessID: biz, Kind: kind, OccurredAt: at,
		})
	}
	ev("alice", "shop-1", schemas.UserMessage, f.aliceMsg)
	ev("alice", "shop-2", schemas.BotStarted, f.aliceBot)
	ev("bob", "shop-1", schemas.UserMessage, f.bobMsg)
	for i := range 150 {
		biz := []string{"shop-1", "shop-3"}[i%2]
		ev(fmt.Sprintf("filler-%03d", i), biz, schemas.UserMessage, t0.Add(10*time.Minute+time.Duration(i)*time.Second))
	}
	ev("alice", "shop-2", schemas.Block, f.aliceBlock)
	for i, biz := range []string{"shop-1", "shop-2"} {
		sc.Campaigns = append(sc.Campaigns, schemas.Campaign{
			CampaignID: fmt.Sprintf("camp-%d", i+1), BusinessID: biz, Action: schemas.Launch,
			SendAt: f.sendAt.Add(time.Duration(i) * time.Minute), ExpiresAt: f.sendAt.Add(72 * time.Hour),
			Message: schemas.Message{Text: "hello from " + biz},
		})
	}
	return sc, f
}

// stateFacts are the times of stateScenario that the tools must show.
type stateFacts struct {
	aliceMsg, aliceBot, aliceBlock, bobMsg, sendAt time.Time
}

// stateCLI runs the sponsor binary; an exit status other than 0 is an
// error carrying stderr.
func stateCLI(t *testing.T, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	cmd := exec.Command(sponsorBinary(t), args...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err = cmd.Run()
	if ee, ok := errors.AsType[*exec.ExitError](err); ok {
		err = fmt.Errorf("sponsor %s: exit %d: %s", strings.Join(args, " "), ee.ExitCode(), strings.TrimSpace(errb.String()))
	}
	return out.String(), errb.String(), err
}

// stateGet runs `sponsor state get` and decodes its output.
func stateGet(t *testing.T, args ...string) state.UserView {
	t.Helper()
	out, _, err := stateCLI(t, append([]string{"state", "get"}, args...)...)
	if err != nil {
		t.Fatal(err)
	}
	if testing.Verbose() {
		t.Logf("sponsor state get %s:\n%s", strings.Join(args, " "), out)
	}
	var v state.UserView
	dec := json.NewDecoder(strings.NewReader(out))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&v); err != nil {
		t.Fatalf("state get %v: %v\n%s", args, err, out)
	}
	return v
}

// checkStateViews checks what `state get` (args: --from URL or
// --state-dir DIR) shows of alice, bob and carol against stateScenario.
func checkStateViews(t *testing.T, parts int32, f stateFacts, args ...string) {
	t.Helper()
	at := func(tm *time.Time) string {
		if tm == nil {
			return "absent"
		}
		return tm.Format(time.RFC3339Nano)
	}
	want := func(tm time.Time) string { return tm.UTC().Format(time.RFC3339Nano) }

	// alice: shop-1 reached her with camp-1; shop-2 is blocked since the
	// BLOCK's time and delivered nothing.
	v := stateGet(t, append([]string{"--user", "alice"}, args...)...)
	if len(v.Partitions) != 1 {
		t.Fatalf("alice: partitions %+v, want exactly one", v.Partitions)
	}
	pv := v.Partitions[0]
	// A running instance says whether it owns the partition (it owns them
	// all here); a state folder cannot know.
	if fromRunning := slices.Contains(args, "--from"); fromRunning != (pv.Owned != nil) || pv.Owned != nil && !*pv.Owned {
		t.Errorf("alice: owned = %v, want %s", pv.Owned, map[bool]string{true: "true (asked a running instance that owns every partition)", false: "absent (read from a state folder)"}[fromRunning])
	}
	if len(pv.Contacts) != 2 || pv.Contacts[0].Business != "shop-1" || pv.Contacts[1].Business != "shop-2" {
		t.Fatalf("alice: contacts %+v, want shop-1 and shop-2", pv.Contacts)
	}
	s1, s2 := pv.Contacts[0], pv.Contacts[1]
	if s1.Blocked || s1.OptedOut || s1.Expired || !s1.LastInteraction["USER_MESSAGE"].Equal(f.aliceMsg) || at(s1.LastSent) != want(f.sendAt) {
		t.Errorf("alice/shop-1: got %+v, want a USER_MESSAGE at %s and last_sent %s", s1, want(f.aliceMsg), want(f.sendAt))
	}
	if !s2.Blocked || at(s2.BlockedSince) != want(f.aliceBlock) || s2.LastSent != nil || !s2.LastInteraction["BOT_STARTED"].Equal(f.aliceBot) {
		t.Errorf("alice/shop-2: got %+v, want blocked since %s, a BOT_STARTED at %s, nothing sent", s2, want(f.aliceBlock), want(f.aliceBot))
	}
	if len(pv.Deliveries) != 1 || pv.Deliveries[0].Business != "shop-1" || !pv.Deliveries[0].SentAt.Equal(f.sendAt) ||
		!firedOrUnnamed(pv.Deliveries[0].Campaigns, "camp-1") {
		t.Errorf("alice: deliveries %+v, want camp-1 of shop-1 sent at %s", pv.Deliveries, want(f.sendAt))
	}
	if len(pv.RecipientSentAt) != 1 || !pv.RecipientSentAt[0].Equal(f.sendAt) {
		t.Errorf("alice: recipient %v, want one delivery at %s (the per-user cap is on)", pv.RecipientSentAt, want(f.sendAt))
	}

	// bob, asked about shop-1 only.
	v = stateGet(t, append([]string{"--user", "bob", "--business", "shop-1"}, args...)...)
	if len(v.Partitions) != 1 || len(v.Partitions[0].Contacts) != 1 {
		t.Fatalf("bob: got %+v, want one partition with the shop-1 contact", v)
	}
	pv = v.Partitions[0]
	if c := pv.Contacts[0]; c.Business != "shop-1" || c.Blocked || !c.LastInteraction["USER_MESSAGE"].Equal(f.bobMsg) || at(c.LastSent) != want(f.sendAt) {
		t.Errorf("bob/shop-1: got %+v", c)
	}
	if len(pv.Deliveries) != 1 || !firedOrUnnamed(pv.Deliveries[0].Campaigns, "camp-1") || !pv.Deliveries[0].SentAt.Equal(f.sendAt) {
		t.Errorf("bob: deliveries %+v, want camp-1 sent at %s", pv.Deliveries, want(f.sendAt))
	}

	// carol: never seen.
	_, _, err := stateCLI(t, append([]string{"state", "get", "--user", "carol"}, args...)...)
	var ps []string
	for p := range parts {
		ps = append(ps, fmt.Sprint(p))
	}
	wantErr := fmt.Sprintf("user carol is not in this state (partitions %s)", strings.Join(ps, ", "))
	if err == nil || !strings.Contains(err.Error(), "exit 1") || !strings.Contains(err.Error(), wantErr) {
		t.Errorf("carol: got %v, want exit 1 and %q", err, wantErr)
	}
}

// TestStateTools runs the pipeline on stateScenario, then the `sponsor
// state` commands as an SRE runs them (the built binary): get through the
// running instance's HTTP endpoint, get and rebuild refused on its folder
// while it runs, get from the folder once it stopped, and rebuild into a
// fresh folder from the changelog, which must hold exactly the keys and
// values of the instance's folder.
func TestStateTools(t *testing.T) {
	sponsorBinary(t)
	sc, facts := stateScenario()
	const parts = 3
	c := newCluster(t, "statetools", parts)
	c.produceScenario(t, sc)
	dir := t.TempDir()
	h := startRunner(t, c, dir, func(cfg *pipeline.Config) {
		cfg.Policy = policy.DefaultConfig()
		cfg.Policy.UserCap = 5
	})
	c.waitSettled(t, campaignIDs(sc.Campaigns), 90*time.Second, h.alive)

	// The scenario's deliveries are in the inbox: camp-1 to alice and bob.
	got := map[string]string{}
	for _, r := range c.readAll(t, c.names.Inbox) {
		m, err := c.serde.DecodeInbox(r.Value)
		if err != nil {
			t.Fatal(err)
		}
		if m.UserID == "alice" || m.UserID == "bob" {
			got[m.UserID] = m.CampaignID + "@" + m.SentAt.UTC().Format(time.RFC3339)
		}
	}
	if w := "camp-1@" + facts.sendAt.Format(time.RFC3339); got["alice"] != w || got["bob"] != w {
		t.Fatalf("inbox: got %v, want %s for alice and bob", got, w)
	}

	srv := httptest.NewServer(h.r.Handler(prometheus.NewRegistry()))
	defer srv.Close()
	t.Run("get/http", func(t *testing.T) { checkStateViews(t, parts, facts, "--from", srv.URL) })

	brokers := []string{"--brokers", strings.Join(c.brokers, ","), "--registry", c.registry, "--topic-prefix", c.prefix, "--group", c.group}
	t.Run("in-use", func(t *testing.T) {
		_, _, err := stateCLI(t, "state", "get", "--user", "alice", "--state-dir", dir)
		if err == nil || !strings.Contains(err.Error(), "is in use by a running instance: use --from http://") {
			t.Errorf("state get on a folder in use: got %v, want the advice to use --from", err)
		}
		_, _, err = stateCLI(t, append([]string{"state", "rebuild", "--state-dir", dir}, brokers...)...)
		if err == nil || !strings.Contains(err.Error(), "is in use by a running instance") {
			t.Errorf("state rebuild on a folder in use: got %v, want a refusal", err)
		}
	})
	h.stop(t)
	srv.Close()

	t.Run("get/folder", func(t *testing.T) { checkStateViews(t, parts, facts, "--state-dir", dir) })

	t.Run("rebuild", func(t *testing.T) {
		fresh := filepath.Join(t.TempDir(), "rebuilt")
		out, stderr, err := stateCLI(t, append([]string{"state", "rebuild", "--state-dir", fresh}, brokers...)...)
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("state rebuild:\n%s%s", out, stderr)
		for p := range parts {
			if !strings.Contains(out, fmt.Sprintf("partition %d: ", p)) {
				t.Errorf("rebuild output names no partition %d:\n%s", p, out)
			}
		}
		if !strings.Contains(out, "records/s)") || !strings.Contains(stderr, "done") {
			t.Errorf("rebuild output: want the totals with records/s on stdout and progress on stderr; got\n%s\n%s", out, stderr)
		}
		orig, rebuilt := dumpPebble(t, filepath.Join(dir, "pebble")), dumpPebble(t, filepath.Join(fresh, "pebble"))
		if len(orig) == 0 {
			t.Fatal("the instance's folder is empty")
		}
		// The checkpoints (the next changelog offset each partition needs)
		// differ by design: the instance's is the offset after its last
		// changelog record, the restore's the changelog's end, past the
		// last transaction's commit marker. Both are positions after every
		// record; check them apart.
		ends := c.offsets(t, c.names.Changelog, false)
		for p := range int32(parts) {
			k := string(checkpointKey(p))
			o, r := decodeCheckpoint(t, orig[k]), decodeCheckpoint(t, rebuilt[k])
			if r != ends[p] || o > r || o < 1 {
				t.Errorf("partition %d: checkpoints: instance %d, rebuilt %d; want the rebuilt one at the changelog's end %d, the instance's in (0, %d]", p, o, r, ends[p], ends[p])
			}
			delete(orig, k)
			delete(rebuilt, k)
		}
		diffKV(t, orig, rebuilt)

		// A partial rebuild: only partition 1, into another fresh folder.
		fresh1 := filepath.Join(t.TempDir(), "rebuilt1")
		if _, _, err := stateCLI(t, append([]string{"state", "rebuild", "--state-dir", fresh1, "--partitions", "1"}, brokers...)...); err != nil {
			t.Fatal(err)
		}
		want1 := map[string]string{}
		for k, v := range orig {
			if k[:4] == "\x00\x00\x00\x01" {
				want1[k] = v
			}
		}
		got1 := dumpPebble(t, filepath.Join(fresh1, "pebble"))
		if cp := decodeCheckpoint(t, got1[string(checkpointKey(1))]); cp != ends[1] {
			t.Errorf("partial rebuild: checkpoint %d, want %d", cp, ends[1])
		}
		delete(got1, string(checkpointKey(1)))
		diffKV(t, want1, got1)
	})
}

// checkpointKey is the state package's key of partition p's checkpoint:
// the 4-byte partition, 'k'.
func checkpointKey(p int32) []byte {
	return append(binary.BigEndian.AppendUint32(nil, uint32(p)), 'k')
}

// decodeCheckpoint decodes a checkpoint value: version byte 1, varint.
func decodeCheckpoint(t *testing.T, v string) int64 {
	t.Helper()
	if len(v) < 2 || v[0] != 1 {
		t.Fatalf("checkpoint value %x: want version 1 and a varint", v)
	}
	n, k := binary.Varint([]byte(v[1:]))
	if k != len(v)-1 {
		t.Fatalf("checkpoint value %x: bad varint", v)
	}
	return n
}

// quietPebble discards Pebble's logs.
type quietPebble struct{}

func (quietPebble) Infof(string, ...any)  {}
func (quietPebble) Errorf(string, ...any) {}
func (quietPebble) Fatalf(format string, args ...any) {
	panic(fmt.Sprintf(format, args...))
}

// dumpPebble returns every key and value of the Pebble store in dir.
func dumpPebble(t *testing.T, dir string) map[string]string {
	t.Helper()
	db, err := pebble.Open(dir, &pebble.Options{ReadOnly: true, Logger: quietPebble{}})
	if err != nil {
		t.Fatalf("open %s: %v", dir, err)
	}
	defer db.Close()
	it, err := db.NewIter(nil)
	if err != nil {
		t.Fatal(err)
	}
	defer it.Close()
	kv := map[string]string{}
	for it.First(); it.Valid(); it.Next() {
		kv[string(it.Key())] = string(it.Value())
	}
	if err := it.Error(); err != nil {
		t.Fatal(err)
	}
	return kv
}

// diffKV reports every key whose value differs between want and got.
func diffKV(t *testing.T, want, got map[string]string) {
	t.Helper()
	var diffs []string
	for k, v := range want {
		if g, ok := got[k]; !ok {
			diffs = append(diffs, fmt.Sprintf("missing %q", k))
		} else if g != v {
			diffs = append(diffs, fmt.Sprintf("%q: got %x, want %x", k, g, v))
		}
	}
	for k := range got {
		if _, ok := want[k]; !ok {
			diffs = append(diffs, fmt.Sprintf("extra %q", k))
		}
	}
	slices.Sort(diffs)
	if len(diffs) > 0 {
		if len(diffs) > 20 {
			diffs = append(diffs[:20], fmt.Sprintf("... and %d more", len(diffs)-20))
		}
		t.Errorf("%d of %d keys differ:\n%s", len(diffs), len(want), strings.Join(diffs, "\n"))
	} else {
		t.Logf("%d keys, all equal", len(want))
	}
}

// firedOrUnnamed reports whether a delivery's campaigns name the one that
// delivered, or none: a partition whose fan-out ended within one
// transaction keeps no record of the campaign (docs/design.md, "Campaign
// state"), and the state remembers only when the business delivered.
func firedOrUnnamed(campaigns []string, want string) bool {
	return len(campaigns) == 0 || slices.Equal(campaigns, []string{want})
}
