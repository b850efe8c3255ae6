package policy_test

import (
	"fmt"
	"maps"
	"math"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cockroachdb/datadriven"
	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/sponsored/sponsor/policy"
	"github.com/sponsored/sponsor/schemas"
	"github.com/sponsored/sponsor/state"
)

// TestPolicy replays the stories in testdata/: each file is one task's input
// (interactions and campaign records in the order the task reads them) and
// the deliveries and suppressions the rules of DESIGN.md give. The stories
// run the partition core itself (policy.Partition) over the runtime's store
// (state.Batch on a Pebble in memory), so they cover the key layout too.
// Run with -rewrite to regenerate the expected output, then check it by
// hand against the rules: the files are the specification, not a snapshot.
//
// Commands (times are UTC, 2006-01-02T15:04[:05[.000]]; durations are Go
// durations or a number of days with the suffix d):
//
//	config [cap=N] [gap=D] [retention=D] [grace=D]
//	    starts a new task with DefaultConfig changed as given.
//	watch users=u1,u2
//	    lists these users in every fan-out: one the fan-out passes over (no
//	    contact with the business, or one forgotten as of the fire time)
//	    shows as NO_CONTACT, the rules' decision for them (the runtime
//	    writes no record for them).
//	interaction user=U [biz=B] kind=KIND at=T
//	    the task reads an interaction: it fires the campaigns that are due
//	    by stream time (send_at < T - grace) first, then applies it. It is
//	    "late" when T is behind the watermark (stream time - grace), and not
//	    stored when it is at or before the user's erasure. USER_ERASED
//	    marks the user erased as of the time it prints.
//	campaign id=C biz=B send=T [expires=T] [audience=KIND:DAYS,...] [action=CANCEL]
//	    the task reads a campaign record (Admit); a late LAUNCH fires at once.
//	    expires defaults to send + 30d.
//	advance to=T
//	    stream time reaches T (as an interaction of another user at T would).
//	wall to=T
//	    the task has caught up and the wall clock reads T: fires what
//	    DueByWallClock says, each as of its send time.
//	fire id=C
//	    fires C now if it is pending, as the wall clock just past its send
//	    time and the grace would (and so every campaign due before it), as
//	    of its send time.
//	contact user=U biz=B
//	    prints what the task knows about the pair.
//	expiry at=T
//	    prints which contacts, recipients and campaigns could be forgotten at T.
//
// The campaign records a story reads form its campaigns topic (one
// partition, offsets from 0; a record's timestamp is ts=T, default none):
//
//	config ... [topic-retention=D] [budget=N]
//	    the campaigns topic's retention (default infinite) and the
//	    decisions a transaction makes (default unlimited). An interaction
//	    that the fan-outs made wait prints so.
//	more
//	    continues the fan-outs in a transaction of their own.
//	restart
//	    the task restarts: it reloads its state from the store and
//	    replays the topic's records from its replay offset up to its
//	    campaigns offset (Partition.Replay), writing nothing; those older
//	    than the retention as of the task time are gone.
//	stored
//	    prints the campaign records in the store, the frontier, the
//	    replay offset, and the campaign records written (puts and
//	    deletes) since the last stored.
func TestPolicy(t *testing.T) {
	datadriven.Walk(t, "testdata", func(t *testing.T, path string) {
		var s *story
		datadriven.RunTest(t, path, func(t *testing.T, td *datadriven.TestData) string {
			if td.Cmd != "config" && s == nil {
				td.Fatalf(t, "the first command of a story must be config")
			}
			switch td.Cmd {
			case "config":
				cfg := policy.DefaultConfig()
				if a, ok := td.Arg("cap"); ok {
					n, err := strconv.Atoi(a.SingleVal(t))
					if err != nil {
						td.Fatalf(t, "cap: %v", err)
					}
					cfg.UserCap = n
				}
				if a, ok := td.Arg("gap"); ok {
					cfg.ConversationGap = parseDuration(t, td, a.SingleVal(t))
				}
				if a, ok := td.Arg("retention"); ok {
					cfg.ContactRetention = parseDuration(t, td, a.SingleVal(t))
				}
				if a, ok := td.Arg("grace"); ok {
					cfg.Grace = parseDuration(t, td, a.SingleVal(t))
				}
				p, err := policy.New(cfg)
				if err != nil {
					s = nil
					return "error: " + err.Error()
				}
				s = newStory(t, p)
				if a, ok := td.Arg("topic-retention"); ok {
					s.retention = parseDuration(t, td, a.SingleVal(t)).Milliseconds()
					s.part.SetRetention(s.retention)
				}
				if a, ok := td.Arg("budget"); ok {
					n, err := strconv.Atoi(a.SingleVal(t))
					if err != nil {
						td.Fatalf(t, "budget: %v", err)
					}
					s.budget = n
				}
				return "ok"
			case "more":
				return s.more()
			case "restart":
				return s.restart()
			case "stored":
				return s.stored()
			case "watch":
				users := strings.Split(arg(t, td, "users"), ",")
				s.watched = append(s.watched, users...)
				return "ok"
			case "interaction":
				kind, ok := schemas.ParseInteractionKind(arg(t, td, "kind"))
				if !ok {
					td.Fatalf(t, "unknown kind %q", arg(t, td, "kind"))
				}
				biz := ""
				if td.HasArg("biz") {
					biz = arg(t, td, "biz")
				}
				return s.interaction(arg(t, td, "user"), biz, kind, parseTime(t, td, arg(t, td, "at")))
			case "campaign":
				c := &schemas.Campaign{CampaignID: arg(t, td, "id"), Action: schemas.Launch}
				if td.HasArg("biz") {
					c.BusinessID = arg(t, td, "biz")
				}
				if td.HasArg("send") {
					c.SendAt = time.UnixMilli(parseTime(t, td, arg(t, td, "send"))).UTC()
					c.ExpiresAt = c.SendAt.Add(30 * 24 * time.Hour)
				}
				if td.HasArg("expires") {
					c.ExpiresAt = time.UnixMilli(parseTime(t, td, arg(t, td, "expires"))).UTC()
				}
				if td.HasArg("audience") {
					c.Audience = parseAudience(t, td, arg(t, td, "audience"))
				}
				if td.HasArg("action") {
					switch a := arg(t, td, "action"); a {
					case "LAUNCH":
					case "CANCEL":
						c.Action = schemas.Cancel
					default:
						n, err := strconv.Atoi(a)
						if err != nil {
							td.Fatalf(t, "action %q", a)
						}
						c.Action = schemas.CampaignAction(n)
					}
				}
				c.Message = schemas.Message{Text: "hello from " + c.BusinessID}
				var ts policy.Millis
				if td.HasArg("ts") {
					ts = parseTime(t, td, arg(t, td, "ts"))
				}
				return s.campaign(c, ts)
			case "advance":
				return s.advance(parseTime(t, td, arg(t, td, "to")))
			case "wall":
				return s.wall(parseTime(t, td, arg(t, td, "to")))
			case "fire":
				return s.fireByID(arg(t, td, "id"))
			case "contact":
				return s.contactString(arg(t, td, "user"), arg(t, td, "biz"))
			case "expiry":
				return s.expiry(parseTime(t, td, arg(t, td, "at")))
			default:
				td.Fatalf(t, "unknown command %q", td.Cmd)
				return ""
			}
		})
	})
}

// story is one partition as the runtime runs it: a policy.Partition over
// a state.Batch of a Pebble store in memory, one transaction per command
// (begun, finished and committed as the runtime's loop does, with no
// expiry sweep: the stories show that decisions do not depend on when
// sweeps run), and an Output that prints what the partition decides.
type story struct {
	t       *testing.T
	pol     *policy.Policy
	store   *state.Store
	part    *policy.Partition
	batch   *storyStore
	out     storyOutput
	next    int64 // the next checkpoint
	watched []string
	// pairs and users are those the story has mentioned, for expiry.
	pairs map[[2]string]bool
	users map[string]bool
	// topic is the campaigns topic's partition 0: the records read, by
	// offset; retention its retention (0: infinite).
	topic     []storyRecord
	retention policy.Millis
	budget    int // decisions per transaction
	writes    int // campaign records written since the last stored
}

// storyRecord is a record of the story's campaigns topic.
type storyRecord struct {
	c  schemas.Campaign
	ts policy.Millis
}

// partition is the partition of the stories' task.
const partition = 0

func newStory(t *testing.T, p *policy.Policy) *story {
	t.Helper()
	store, err := state.Open("/story", state.Options{FS: vfs.NewMem()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	s := &story{t: t, pol: p, store: store, part: policy.NewPartition(p), pairs: map[[2]string]bool{}, users: map[string]bool{}, budget: math.MaxInt}
	s.out.s = s
	meta, cs, err := store.LoadTask(partition)
	if err != nil {
		t.Fatal(err)
	}
	s.part.Load(meta, cs)
	return s
}

// txn runs fn in a transaction of the partition and returns what it
// printed.
func (s *story) txn(fn func(b *strings.Builder) error) string {
	s.t.Helper()
	s.batch = &storyStore{Batch: s.store.NewBatch(partition), out: &s.out, put: map[[2]string]bool{}}
	defer s.batch.Close()
	var b strings.Builder
	s.out.b = &b
	s.part.Begin(s.batch, &s.out, s.budget)
	if err := fn(&b); err != nil {
		s.t.Fatal(err)
	}
	if err := s.part.Finish(); err != nil {
		s.t.Fatal(err)
	}
	s.next++
	if err := s.batch.Commit(s.next); err != nil {
		s.t.Fatal(err)
	}
	return strings.TrimSuffix(b.String(), "\n")
}

// storyStore is the transaction's batch, noting the contacts an
// interaction (not a fan-out) writes.
type storyStore struct {
	*state.Batch
	out *storyOutput
	put map[[2]string]bool
}

func (st *storyStore) PutCampaign(p *policy.Progress) error {
	st.out.s.writes++
	return st.Batch.PutCampaign(p)
}

func (st *storyStore) DeleteCampaign(id string) error {
	st.out.s.writes++
	return st.Batch.DeleteCampaign(id)
}

func (st *storyStore) PutContact(user, business string, c *policy.Contact, known bool) error {
	if st.out.fanout == nil {
		st.put[[2]string{user, business}] = true
	}
	return st.Batch.PutContact(user, business, c, known)
}

// storyOutput prints a fan-out once it is finished: the campaign, then
// each decision in user order, the watched users among them.
type storyOutput struct {
	s         *story
	b         *strings.Builder
	fanout    *policy.Progress                    // the fan-out whose chunk is running
	decisions map[string]map[string]policy.Reason // by campaign, then user
	tallies   map[policy.Tally]bool
}

func (o *storyOutput) Chunking(c *policy.Progress) {
	if o.decisions == nil {
		o.decisions = map[string]map[string]policy.Reason{}
	}
	if o.decisions[c.Campaign.ID] == nil {
		o.decisions[c.Campaign.ID] = map[string]policy.Reason{}
	}
	o.fanout = c
}

func (o *storyOutput) Decided(c *policy.Progress, user string, reason policy.Reason) error {
	o.decisions[c.Campaign.ID][user] = reason
	return nil
}

func (o *storyOutput) Chunked(c *policy.Progress, ch policy.Chunk) error {
	o.fanout = nil
	if !ch.Done {
		return nil
	}
	// A watched user the fan-out passed over (no contact with the
	// business in the partition's state, or one forgotten as of the fire
	// time) is shown with the rules' decision for them, NO_CONTACT; the
	// runtime writes no record for them.
	decisions := o.decisions[c.Campaign.ID]
	for _, u := range o.s.watched {
		if _, ok := decisions[u]; !ok {
			decisions[u] = policy.NoContact
		}
	}
	fmt.Fprintf(o.b, "fire %s %s as of %s\n", c.Campaign.ID, c.Campaign.Business, fmtTime(c.FireAt))
	for _, u := range slices.Sorted(maps.Keys(decisions)) {
		fmt.Fprintf(o.b, "  %s: %s\n", u, decisions[u])
	}
	delete(o.decisions, c.Campaign.ID)
	return nil
}

func (o *storyOutput) Counted(tally policy.Tally, _ schemas.InteractionKind) {
	if o.tallies == nil {
		o.tallies = map[policy.Tally]bool{}
	}
	o.tallies[tally] = true
}

func (s *story) interaction(user, biz string, kind schemas.InteractionKind, at policy.Millis) string {
	s.users[user] = true
	if biz != "" {
		s.pairs[[2]string{user, biz}] = true
	}
	return s.txn(func(b *strings.Builder) error {
		clear(s.out.tallies)
		ok, err := s.part.Interaction(user, biz, kind, at)
		if err != nil {
			return err
		}
		if !ok {
			fmt.Fprintf(b, "%s/%s %s: waits for the fan-outs", user, biz, kind)
			return nil
		}
		tally := s.out.tallies
		late := ""
		if tally[policy.LateSuppression] {
			late = " (late, after a delivery it would have stopped)"
		} else if tally[policy.Late] {
			late = " (late)"
		}
		if kind == schemas.UserErased {
			e, _, err := s.batch.Erasure(user)
			fmt.Fprintf(b, "%s erased%s: marked as of %s", user, late, fmtTime(e.At))
			return err
		}
		if tally[policy.Erased] {
			e, _, err := s.batch.Erasure(user)
			fmt.Fprintf(b, "%s/%s %s%s: not stored, before the erasure at %s", user, biz, kind, late, fmtTime(e.At))
			return err
		}
		if tally[policy.Forgot] {
			fmt.Fprintf(b, "%s/%s expired: forgotten\n", user, biz)
		}
		if s.batch.put[[2]string{user, biz}] {
			fmt.Fprintf(b, "%s/%s %s%s: changed", user, biz, kind, late)
		} else {
			fmt.Fprintf(b, "%s/%s %s%s: unchanged", user, biz, kind, late)
		}
		return nil
	})
}

func (s *story) campaign(c *schemas.Campaign, ts policy.Millis) string {
	off := int64(len(s.topic))
	s.topic = append(s.topic, storyRecord{c: *c, ts: ts})
	return s.txn(func(b *strings.Builder) error {
		v, err := s.part.Admit(c, policy.Source{Partition: 0, Offset: off, Time: ts})
		s.part.SetCampaignOffset(0, off+1)
		if err != nil {
			return err
		}
		status := "none"
		if p := s.part.Campaign(c.CampaignID); p != nil {
			status = p.Status.String()
		}
		fmt.Fprintf(b, "%s %s: %s, %s\n", c.CampaignID, c.Action, v, status)
		// A LAUNCH that fires at once runs before what the task reads
		// next, as the runtime's first step of a transaction does.
		_, err = s.part.Fanout()
		return err
	})
}

// more continues the fan-outs in a transaction.
func (s *story) more() string {
	return s.txn(func(b *strings.Builder) error {
		ok, err := s.part.Fanout()
		if err == nil && !ok {
			b.WriteString("the fan-outs go on\n")
		}
		return err
	})
}

// restart reloads the partition from the store and replays the topic from
// its replay offset, as the runtime's task.load does.
func (s *story) restart() string {
	meta, cs, err := s.store.LoadTask(partition)
	if err != nil {
		s.t.Fatal(err)
	}
	s.part = policy.NewPartition(s.pol)
	s.part.SetRetention(s.retention)
	s.part.Load(meta, cs)
	from, end := s.part.ReplayOffset(0), s.part.CampaignOffset(0)
	deleted := 0
	for off := from; off < end; off++ {
		r := s.topic[off]
		if s.retention > 0 && r.ts > 0 && r.ts < s.part.Time()-s.retention {
			deleted++ // the topic's retention deleted it (as of the task time)
			continue
		}
		s.part.Replay(&r.c, policy.Source{Partition: 0, Offset: off, Time: r.ts})
	}
	gone := ""
	if deleted > 0 {
		gone = fmt.Sprintf(" (%d deleted by the retention)", deleted)
	}
	return fmt.Sprintf("replayed offsets %d to %d%s: %d campaigns remembered", from, end, gone, s.part.Campaigns())
}

// stored prints the campaign state the store holds.
func (s *story) stored() string {
	meta, cs, err := s.store.LoadTask(partition)
	if err != nil {
		s.t.Fatal(err)
	}
	var b strings.Builder
	fmt.Fprintf(&b, "writes %d\n", s.writes)
	s.writes = 0
	if meta.Frontier.ID != "" {
		fmt.Fprintf(&b, "frontier %s %s\n", fmtTime(meta.Frontier.SendAt), meta.Frontier.ID)
	}
	if len(meta.Replay) > 0 {
		fmt.Fprintf(&b, "replay from %d of %d\n", meta.Replay[0], meta.Campaigns[0])
	}
	for _, c := range cs {
		fmt.Fprintf(&b, "record %s %s", c.Campaign.ID, c.Status)
		if c.Cursor != "" {
			fmt.Fprintf(&b, " cursor=%s", c.Cursor)
		}
		if c.Keep {
			b.WriteString(" keep")
		}
		b.WriteString("\n")
	}
	return strings.TrimSuffix(b.String(), "\n")
}

func (s *story) advance(to policy.Millis) string {
	return s.txn(func(b *strings.Builder) error {
		// A BUSINESS_MESSAGE stores nothing: only the stream time moves.
		ok, err := s.part.Interaction("", "", schemas.BusinessMessage, to)
		if err != nil {
			return err
		}
		if !ok {
			b.WriteString("waits for the fan-outs")
			return nil
		}
		fmt.Fprintf(b, "task time %s", fmtTime(s.part.Time()))
		return nil
	})
}

func (s *story) wall(wall policy.Millis) string {
	return s.txn(func(b *strings.Builder) error {
		if err := s.part.FireByWallClock(wall); err != nil {
			return err
		}
		fmt.Fprintf(b, "task time %s", fmtTime(s.part.Time()))
		return nil
	})
}

// fireByID fires campaign id if it is pending, as the wall clock just past
// its send time and grace would (with every campaign pending before it).
func (s *story) fireByID(id string) string {
	p := s.part.Campaign(id)
	if p == nil {
		return id + ": unknown"
	}
	if p.Status != policy.Pending {
		return fmt.Sprintf("%s: not pending (%s)", id, p.Status)
	}
	return s.txn(func(*strings.Builder) error {
		return s.part.FireByWallClock(p.Campaign.SendAt + s.pol.Grace() + 1)
	})
}

// contact returns what the partition's state holds of the contact between
// user and business: for an erased user, only what came after the erasure.
func (s *story) contact(user, biz string) (*policy.Contact, error) {
	b := s.store.NewBatch(partition)
	defer b.Close()
	c, ok, err := b.Contact(user, biz)
	if err != nil || !ok {
		return nil, err
	}
	e, erased, err := b.Erasure(user)
	if err != nil {
		return nil, err
	}
	if erased {
		if c, _, ok = e.After(biz, &c); !ok {
			return nil, nil
		}
	}
	return &c, nil
}

func (s *story) contactString(user, biz string) string {
	c, err := s.contact(user, biz)
	if err != nil {
		s.t.Fatal(err)
	}
	if c == nil {
		return "none"
	}
	var b strings.Builder
	for k := schemas.UserMessage; k <= schemas.BotCTAClick; k++ {
		if c.Last[k] != 0 {
			fmt.Fprintf(&b, "%s=%s ", k, fmtTime(c.Last[k]))
		}
	}
	if c.BlockAt != 0 {
		fmt.Fprintf(&b, "blocked=%t@%s ", c.Blocked, fmtTime(c.BlockAt))
	}
	if c.OptAt != 0 {
		fmt.Fprintf(&b, "optedout=%t@%s ", c.OptedOut, fmtTime(c.OptAt))
	}
	if c.LastSent != 0 {
		fmt.Fprintf(&b, "lastsent=%s ", fmtTime(c.LastSent))
	}
	for _, e := range c.Recent {
		fmt.Fprintf(&b, "recent=%s@%s ", e.Kind, fmtTime(e.At))
	}
	return strings.TrimSpace(b.String())
}

func (s *story) expiry(at policy.Millis) string {
	var lines []string
	for pair := range s.pairs {
		c, err := s.contact(pair[0], pair[1])
		if err != nil {
			s.t.Fatal(err)
		}
		if c != nil {
			lines = append(lines, fmt.Sprintf("contact %s/%s: %s", pair[0], pair[1], keptOr(s.pol.ContactExpired(c, at), "expired")))
		}
	}
	b := s.store.NewBatch(partition)
	defer b.Close()
	for u := range s.users {
		r, ok, err := b.Recipient(u)
		if err != nil {
			s.t.Fatal(err)
		}
		if ok {
			lines = append(lines, fmt.Sprintf("recipient %s: %s", u, keptOr(s.pol.RecipientExpired(&r, at), "expired")))
		}
	}
	for _, id := range s.part.CampaignIDs() {
		p := s.part.Campaign(id)
		lines = append(lines, fmt.Sprintf("campaign %s (%s): %s", p.Campaign.ID, p.Status, keptOr(policy.Forgettable(p, at), "forgettable")))
	}
	slices.Sort(lines)
	return strings.Join(lines, "\n")
}

func keptOr(gone bool, word string) string {
	if gone {
		return word
	}
	return "kept"
}

func arg(t *testing.T, td *datadriven.TestData, key string) string {
	t.Helper()
	a, ok := td.Arg(key)
	if !ok {
		td.Fatalf(t, "missing argument %s", key)
	}
	return a.SingleVal(t)
}

var timeLayouts = []string{"2006-01-02T15:04:05.000", "2006-01-02T15:04:05", "2006-01-02T15:04"}

func parseTime(t *testing.T, td *datadriven.TestData, s string) policy.Millis {
	t.Helper()
	for _, l := range timeLayouts {
		if tm, err := time.Parse(l, s); err == nil {
			return tm.UnixMilli()
		}
	}
	td.Fatalf(t, "bad time %q", s)
	return 0
}

func fmtTime(ms policy.Millis) string {
	tm := time.UnixMilli(ms).UTC()
	switch {
	case ms%1000 != 0:
		return tm.Format(timeLayouts[0])
	case ms%60000 != 0:
		return tm.Format(timeLayouts[1])
	}
	return tm.Format(timeLayouts[2])
}

func parseDuration(t *testing.T, td *datadriven.TestData, s string) time.Duration {
	t.Helper()
	if d, ok := strings.CutSuffix(s, "d"); ok {
		n, err := strconv.Atoi(d)
		if err != nil {
			td.Fatalf(t, "bad duration %q", s)
		}
		return time.Duration(n) * 24 * time.Hour
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		td.Fatalf(t, "bad duration %q", s)
	}
	return d
}

func parseAudience(t *testing.T, td *datadriven.TestData, s string) []schemas.AudienceRule {
	t.Helper()
	var rules []schemas.AudienceRule
	for _, f := range strings.Split(s, ",") {
		if f == "" {
			continue
		}
		name, days, ok := strings.Cut(f, ":")
		kind, kok := schemas.ParseInteractionKind(name)
		n, err := strconv.Atoi(days)
		if !ok || !kok || err != nil {
			td.Fatalf(t, "bad audience rule %q (want KIND:DAYS)", f)
		}
		rules = append(rules, schemas.AudienceRule{Kind: kind, WithinDays: int32(n)})
	}
	return rules
}
