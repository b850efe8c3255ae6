package policy_test

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cockroachdb/datadriven"

	"github.com/sponsored/sponsor/policy"
	"github.com/sponsored/sponsor/schemas"
)

// TestPolicy replays the stories in testdata/: each file is one task's input
// (interactions and campaign records in the order the task reads them) and
// the deliveries and suppressions the rules of DESIGN.md give. Run with
// -rewrite to regenerate the expected output, then check it by hand against
// the rules: the files are the specification, not a snapshot.
//
// Commands (times are UTC, 2006-01-02T15:04[:05[.000]]; durations are Go
// durations or a number of days with the suffix d):
//
//	config [cap=N] [gap=D] [retention=D] [grace=D]
//	    starts a new task with DefaultConfig changed as given.
//	watch users=u1,u2
//	    adds users to every fan-out even without a contact (to show NO_CONTACT).
//	interaction user=U [biz=B] kind=KIND at=T
//	    the task reads an interaction: it fires the campaigns that are due
//	    by stream time (send_at < T - grace) first, then applies it. It is
//	    "late" when T is behind the watermark (stream time - grace), and not
//	    stored when it is at or before the user's erasure.
//	campaign id=C biz=B send=T [expires=T] [audience=KIND:DAYS,...] [action=CANCEL]
//	    the task reads a campaign record (Admit); a late LAUNCH fires at once.
//	    expires defaults to send + 30d.
//	advance to=T
//	    stream time reaches T (as an interaction of another user at T would).
//	wall to=T
//	    the task has caught up and the wall clock reads T: fires what
//	    DueByWallClock says, each as of its send time.
//	fire id=C
//	    fires C now if it is pending (as the wall clock would), as of its send time.
//	contact user=U biz=B
//	    prints what the task knows about the pair.
//	expiry at=T
//	    prints which contacts, recipients and campaigns could be forgotten at T.
func TestPolicy(t *testing.T) {
	datadriven.Walk(t, "testdata", func(t *testing.T, path string) {
		var s *sim
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
				s = newSim(p)
				return "ok"
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
				return s.campaign(c)
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

// sim is one task as the runtime runs it, with maps instead of Pebble and
// no Kafka: it keeps the task time, the campaigns it has seen, and the
// contacts and recipients of its users, and calls the policy the way the
// runtime does.
type sim struct {
	pol        *policy.Policy
	now        policy.Millis // task time: largest event time processed or fired as of
	contacts   map[string]map[string]*policy.Contact
	recipients map[string]*policy.Recipient
	campaigns  map[string]*policy.Progress
	erased     map[string]policy.Millis // user -> event time of the latest erasure
	watched    []string
}

func newSim(p *policy.Policy) *sim {
	return &sim{
		pol:        p,
		contacts:   map[string]map[string]*policy.Contact{},
		recipients: map[string]*policy.Recipient{},
		campaigns:  map[string]*policy.Progress{},
		erased:     map[string]policy.Millis{},
	}
}

// fireDue fires, in policy.Compare order, the pending campaigns that due
// says must fire.
func (s *sim) fireDue(b *strings.Builder, due func(*policy.Progress) bool) {
	var ps []*policy.Progress
	for _, p := range s.campaigns {
		if due(p) {
			ps = append(ps, p)
		}
	}
	slices.SortFunc(ps, policy.Compare)
	for _, p := range ps {
		policy.Start(p)
		s.fanOut(b, p)
	}
}

// fanOut decides about every user who has a contact with the campaign's
// business (and the watched users), in ascending user order, then marks the
// campaign fired.
func (s *sim) fanOut(b *strings.Builder, p *policy.Progress) {
	camp := &p.Campaign
	var users []string
	for u, bs := range s.contacts {
		if _, ok := bs[camp.Business]; ok {
			users = append(users, u)
		}
	}
	for _, u := range s.watched {
		if !slices.Contains(users, u) {
			users = append(users, u)
		}
	}
	slices.Sort(users)
	fmt.Fprintf(b, "fire %s %s as of %s\n", camp.ID, camp.Business, fmtTime(p.FireAt))
	for _, u := range users {
		c := s.contacts[u][camp.Business]
		if c != nil && !slices.Contains(s.watched, u) {
			// The runtime passes over a contact forgotten as of the fire
			// time, or made only by interactions after it.
			if v := s.pol.AsOf(c, p.FireAt); s.pol.ContactExpired(&v, p.FireAt) {
				continue
			}
		}
		var r *policy.Recipient
		if s.pol.Config().UserCap > 0 {
			r = s.recipients[u]
			if r == nil {
				r = &policy.Recipient{}
			}
		}
		reason := s.pol.Decide(c, r, camp, p.FireAt)
		if reason == policy.Delivered && r != nil {
			s.recipients[u] = r
		}
		fmt.Fprintf(b, "  %s: %s\n", u, reason)
		p.Cursor = u
	}
	p.Status = policy.Fired
	s.now = max(s.now, s.pol.AfterFire(p.FireAt))
}

func (s *sim) interaction(user, biz string, kind schemas.InteractionKind, at policy.Millis) string {
	var b strings.Builder
	s.fireDue(&b, func(p *policy.Progress) bool { return policy.DueByStreamTime(p, s.pol.Watermark(at)) })
	late := ""
	if at < s.pol.Watermark(s.now) {
		late = " (late)"
	}
	s.now = max(s.now, at)
	w := s.pol.LateAsOf(s.pol.Watermark(s.now)) // the fold horizon, as the runtime's
	if kind == schemas.UserErased {
		// The runtime marks the user: what a contact holds of after the
		// erasure (recent interactions that arrived before it) stays.
		n := 0
		for biz, c := range s.contacts[user] {
			if since, ok := c.Since(at); ok {
				s.contacts[user][biz] = &since
			} else {
				delete(s.contacts[user], biz)
				n++
			}
		}
		delete(s.recipients, user)
		if e, ok := s.erased[user]; !ok || at > e {
			s.erased[user] = at
		}
		fmt.Fprintf(&b, "%s erased%s: %d contacts deleted", user, late, n)
		return b.String()
	}
	if e, ok := s.erased[user]; ok && at <= e {
		fmt.Fprintf(&b, "%s/%s %s%s: not stored, before the erasure at %s", user, biz, kind, late, fmtTime(e))
		return b.String()
	}
	c := s.contacts[user][biz]
	if c != nil && s.pol.ExpiredBefore(c, at, w) {
		// The runtime tests expiry on load, as of the task time, so that
		// the outcome does not depend on when its sweeps ran.
		delete(s.contacts[user], biz)
		fmt.Fprintf(&b, "%s/%s expired: forgotten\n", user, biz)
		c = nil
	}
	var next policy.Contact
	if c != nil {
		next = *c
		next.Recent = slices.Clone(c.Recent)
	}
	if late != "" && next.LateSuppression(kind, at) {
		late = " (late, after a delivery it would have stopped)"
	}
	if s.pol.Observe(&next, kind, at, w) {
		if s.contacts[user] == nil {
			s.contacts[user] = map[string]*policy.Contact{}
		}
		s.contacts[user][biz] = &next
		fmt.Fprintf(&b, "%s/%s %s%s: changed", user, biz, kind, late)
	} else {
		fmt.Fprintf(&b, "%s/%s %s%s: unchanged", user, biz, kind, late)
	}
	return b.String()
}

func (s *sim) campaign(c *schemas.Campaign) string {
	var b strings.Builder
	known := s.campaigns[c.CampaignID]
	next, v := policy.Admit(known, c, s.pol.LateAsOf(s.pol.Watermark(s.now)))
	if v != policy.Invalid {
		if next == nil {
			delete(s.campaigns, c.CampaignID)
		} else {
			s.campaigns[c.CampaignID] = next
		}
	}
	status := "none"
	if p := s.campaigns[c.CampaignID]; p != nil {
		status = p.Status.String()
	}
	fmt.Fprintf(&b, "%s %s: %s, %s", c.CampaignID, c.Action, v, status)
	if next != nil && next.Status == policy.Firing && v == policy.Accepted {
		b.WriteString("\n")
		s.fanOut(&b, next)
		return strings.TrimSuffix(b.String(), "\n")
	}
	return b.String()
}

func (s *sim) advance(to policy.Millis) string {
	var b strings.Builder
	s.fireDue(&b, func(p *policy.Progress) bool { return policy.DueByStreamTime(p, s.pol.Watermark(to)) })
	s.now = max(s.now, to)
	fmt.Fprintf(&b, "task time %s", fmtTime(s.now))
	return b.String()
}

func (s *sim) wall(wall policy.Millis) string {
	var b strings.Builder
	s.fireDue(&b, func(p *policy.Progress) bool { return policy.DueByWallClock(p, wall-s.pol.Grace()) })
	fmt.Fprintf(&b, "task time %s", fmtTime(s.now))
	return b.String()
}

func (s *sim) fireByID(id string) string {
	p := s.campaigns[id]
	if p == nil {
		return id + ": unknown"
	}
	if p.Status != policy.Pending {
		return fmt.Sprintf("%s: not pending (%s)", id, p.Status)
	}
	var b strings.Builder
	policy.Start(p)
	s.fanOut(&b, p)
	return strings.TrimSuffix(b.String(), "\n")
}

func (s *sim) contactString(user, biz string) string {
	c := s.contacts[user][biz]
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

func (s *sim) expiry(at policy.Millis) string {
	var lines []string
	for u, bs := range s.contacts {
		for biz, c := range bs {
			lines = append(lines, fmt.Sprintf("contact %s/%s: %s", u, biz, keptOr(s.pol.ContactExpired(c, at), "expired")))
		}
	}
	for u, r := range s.recipients {
		lines = append(lines, fmt.Sprintf("recipient %s: %s", u, keptOr(s.pol.RecipientExpired(r, at), "expired")))
	}
	for id, p := range s.campaigns {
		lines = append(lines, fmt.Sprintf("campaign %s (%s): %s", id, p.Status, keptOr(policy.Forgettable(p, at), "forgettable")))
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
