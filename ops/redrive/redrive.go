// Package redrive sends dead letters back to the input topic they came
// from, once whatever rejected them (the producer, the pipeline) is fixed:
// the tool behind `sponsor deadletter redrive`.
//
// # Classes and positions
//
// Every dead letter belongs to one class: its source topic and its reason
// (the pipeline's __connect.errors.topic and sponsor.errors.reason headers).
// A redrive selects whole classes (by source topic and a substring of the
// reason) and keeps, for each class, its position in the dead-letter topic
// as the committed offsets of a consumer group of its own,
// "<group>-redrive.<source topic>.<reason>" (e.g.
// sponsor-redrive.interactions.misrouted-key). Every dead letter of a class
// before its position has been dealt with: sent back, or passed over (see
// Config.Since). One group per class, rather than one group for all, is what
// lets selections be combined: `--reason misrouted-key` today and
// `--reason malformed-avro` tomorrow each move their own class only, and a
// redrive of everything afterwards sends neither class again. A single
// position would have to move past the records a selection did not choose,
// losing them for every later redrive.
//
// # Exactly once
//
// A class is redriven by a [kgo.GroupTransactSession] in the class's group
// that consumes the dead-letter topic read_committed. Each batch is one
// Kafka transaction that holds the records written to the source topics and
// the offsets of the dead letters consumed (TxnOffsetCommit, KIP-447): both
// are committed or neither is. So a dead letter is sent back at most once
// however often the redrive runs, and a redrive killed mid-way resumes at
// its class's last committed batch; the transactional id is the group name,
// so a restart fences its killed predecessor at once and aborts the
// transaction it left open. Two redrives of the same class at once share
// the partitions through the group and still send each dead letter once.
//
// What is sent is the dead letter's key, its value bytes untouched and its
// headers other than the dead-letter ones (__connect.errors.*,
// sponsor.errors.*). An interaction goes to the partition its key maps to
// under Config.Partitioner, the pipeline's: that is the only partition where
// the pipeline accepts it, whatever the reason it was rejected for (a
// wrong-partition dead letter comes from another partition by definition;
// a record rejected for its bytes may have been on the wrong partition as
// well). A campaign goes back to the partition it came from (every task
// reads every campaigns partition). Only the pipeline's input topics are
// written to. A record that is
// rejected again simply becomes a new dead letter (a new offset, after the
// class's position), which a later redrive may send again.
package redrive

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sponsored/sponsor/deadletter"
	"github.com/sponsored/sponsor/kafkaconn"
	"github.com/sponsored/sponsor/topics"
)

// Config says which dead letters to redrive and where the topics are.
type Config struct {
	// Brokers are the Kafka seed brokers. Required.
	Brokers []string
	// ClientOpts are extra franz-go options for every client (TLS, SASL).
	ClientOpts []kgo.Opt
	// Names are the pipeline's topics: dead letters are read from
	// DeadLetter and sent back to Interactions or Campaigns only. Required.
	Names topics.Names
	// Group is the pipeline's consumer group; the positions of the classes
	// are kept in the groups Group+"-redrive.<topic>.<reason>". Required.
	Group string
	// Sources are the source topics to redrive (full names, among
	// Names.Interactions and Names.Campaigns); empty: both.
	Sources []string
	// Reason selects the classes whose reason contains it; empty: all.
	Reason string
	// Since, if not zero, sends only dead letters written at or after it
	// (record timestamps). Older dead letters of a redriven class are
	// passed over for good: a class's position only moves forward.
	Since time.Time
	// Examples is how many dead letters per class the plan shows (default 3).
	Examples int
	// BatchRecords is the most dead letters per transaction (default 1000).
	BatchRecords int
	// Progress, if set, is called after every committed transaction and at
	// the end.
	Progress func(Progress)
	// Logger receives what happens (default: discard).
	Logger *slog.Logger
	// Partitioner is the pipeline's partitioner (its Config.Partitioner):
	// interactions are sent to the partition it maps their key to. A
	// wrong-partition dead letter whose expected partition
	// (deadletter.HeaderExpectedPartition) is not that one stops the redrive
	// with an error: the redrive and the pipeline disagree on the
	// partitioner. Default topics.DefaultPartitioner.
	Partitioner topics.Partitioner
}

func (c *Config) validate() error {
	switch {
	case len(c.Brokers) == 0:
		return errors.New("redrive: no brokers")
	case c.Group == "":
		return errors.New("redrive: no group")
	case c.Names.DeadLetter == "" || c.Names.Interactions == "" || c.Names.Campaigns == "":
		return errors.New("redrive: topic names missing")
	}
	if err := c.Partitioner.Validate(); err != nil {
		return fmt.Errorf("redrive: %w", err)
	}
	for _, s := range c.Sources {
		if s != c.Names.Interactions && s != c.Names.Campaigns {
			return fmt.Errorf("redrive: source %q is not an input topic (%s, %s)", s, c.Names.Interactions, c.Names.Campaigns)
		}
	}
	if c.Examples == 0 {
		c.Examples = 3
	}
	if c.BatchRecords <= 0 {
		c.BatchRecords = 1000
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return nil
}

// Class is a kind of dead letter: where it came from and why it was
// rejected.
type Class struct {
	Topic  string // the source topic (header __connect.errors.topic)
	Reason string // the reason code (header sponsor.errors.reason)
}

// GroupName is the consumer group that keeps the position of class c of
// the pipeline group group.
func GroupName(group string, c Class) string {
	return group + "-redrive." + c.Topic + "." + c.Reason
}

// Example is one dead letter a redrive would send.
type Example struct {
	Partition       int32 // in the dead-letter topic
	Offset          int64 // in the dead-letter topic
	Timestamp       time.Time
	Key             []byte
	SourcePartition int32
	SourceOffset    int64
	// To is the partition of the source topic it is sent to (see the
	// package doc).
	To int32

	Message string // header __connect.errors.exception.message
}

// ClassPlan counts the dead letters of one class.
type ClassPlan struct {
	Class
	// Selected says whether the Config selects the class.
	Selected bool
	// Group is the consumer group that keeps the class's position.
	Group string
	// Pending are the dead letters after the class's position that a
	// redrive sends (only of selected classes, written since Since).
	Pending int64
	// Older are the dead letters after the position written before Since:
	// a redrive of the class passes over them.
	Older int64
	// Handled are the dead letters before the class's position: redriven
	// or passed over already.
	Handled int64
	// Unselected are the dead letters of a class the Config does not select.
	Unselected int64
	// Examples are the first few pending dead letters.
	Examples []Example
}

// Plan is what a redrive would do: the dead letters of each class, up to the
// end of the dead-letter topic as of MakePlan.
type Plan struct {
	Topic   string           // the dead-letter topic
	Ends    map[int32]int64  // its last stable offsets when planned
	Classes []ClassPlan      // sorted by topic and reason
	Skipped map[string]int64 // dead letters no redrive sends, by why not
	starts  map[int32]int64  // its start offsets
	parts   map[string]int32 // partitions of the source topics
	pos     map[string]kadm.OffsetResponses
}

// Total is the number of dead letters a redrive of p sends.
func (p *Plan) Total() int64 {
	var n int64
	for _, c := range p.Classes {
		n += c.Pending
	}
	return n
}

// Progress is a redrive's progress.
type Progress struct {
	// Sent are the dead letters sent back, in committed transactions.
	Sent int64
	// Total is what the plan counted.
	Total int64
	// Elapsed is the time since the start.
	Elapsed time.Duration
	// Rate is Sent per second.
	Rate float64
	// ETA is the estimated time left; negative when unknown.
	ETA time.Duration
	// Done is set on the last report.
	Done bool
}

// Result is what a redrive did.
type Result struct {
	// Sent counts the dead letters sent back, by class.
	Sent map[Class]int64
	// Elapsed is how long it took.
	Elapsed time.Duration
}

// Total is the number of dead letters sent back.
func (r Result) Total() int64 {
	var n int64
	for _, v := range r.Sent {
		n += v
	}
	return n
}

// letter is a dead letter's headers, parsed, with its class.
type letter struct {
	deadletter.Letter
	class Class
}

func parse(r *kgo.Record) letter {
	l := deadletter.Parse(r)
	return letter{Letter: l, class: Class{Topic: l.Topic, Reason: string(l.Reason)}}
}

// why returns why no redrive sends a dead letter with l's headers, or "".
func (c *Config) why(l letter, parts map[string]int32) string {
	switch {
	case l.class.Topic == "":
		return "no source topic header"
	case l.class.Topic != c.Names.Interactions && l.class.Topic != c.Names.Campaigns:
		return "source is not an input topic"
	case l.class.Reason == "":
		return "no reason header"
	case l.Partition < 0:
		return "no source partition header"
	case l.Partition >= parts[l.class.Topic]:
		return "source partition does not exist"
	}
	return ""
}

// ErrPartitionerMismatch: a wrong-partition dead letter was expected by the
// pipeline on another partition than the one Config.Partitioner maps its key
// to. Sending it would only make it a dead letter again.
var ErrPartitionerMismatch = errors.New("the pipeline expected the record on another partition than --partitioner gives")

// destination returns the partition of the source topic that dead letter r
// (with headers l) is sent to; see the package doc.
func (c *Config) destination(r *kgo.Record, l letter, parts map[string]int32) (int32, error) {
	if l.class.Topic != c.Names.Interactions {
		return l.Partition, nil
	}
	to := c.Partitioner.Partition(r.Key, parts[l.class.Topic])
	if l.Reason == deadletter.ReasonWrongPartition && l.Expected >= 0 && l.Expected != to {
		return -1, fmt.Errorf("dead letter %s/%d@%d (key %q): %w (the pipeline expected partition %d, the %s partitioner gives %d): give the redrive the pipeline's --partitioner, or SPONSOR_PARTITIONER",
			r.Topic, r.Partition, r.Offset, r.Key, ErrPartitionerMismatch, l.Expected, c.Partitioner, to)
	}
	return to, nil
}

func (c *Config) selects(cl Class) bool {
	return (len(c.Sources) == 0 || slices.Contains(c.Sources, cl.Topic)) && strings.Contains(cl.Reason, c.Reason)
}

func (c *Config) client(extra ...kgo.Opt) (*kgo.Client, error) {
	cl, err := kgo.NewClient(append(append(append([]kgo.Opt{}, c.ClientOpts...), kgo.SeedBrokers(c.Brokers...)), extra...)...)
	if err != nil {
		return nil, fmt.Errorf("kafka client: %w", err)
	}
	return cl, nil
}

// MakePlan reads the dead-letter topic read_committed, from its start to its
// last stable offsets of now, and counts its dead letters by class, against
// the classes' positions. It writes nothing.
func MakePlan(ctx context.Context, cfg Config) (*Plan, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	cl, err := cfg.client()
	if err != nil {
		return nil, err
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	dl := cfg.Names.DeadLetter
	p := &Plan{Topic: dl, Ends: map[int32]int64{}, Skipped: map[string]int64{}, starts: map[int32]int64{}, pos: map[string]kadm.OffsetResponses{}}

	// The partitions of the sources, to send nothing to one that is gone.
	parts := map[string]int32{}
	p.parts = parts
	td, err := adm.ListTopics(ctx, cfg.Names.Interactions, cfg.Names.Campaigns, dl)
	if err != nil {
		return nil, fmt.Errorf("list topics: %w", err)
	}
	for _, name := range []string{cfg.Names.Interactions, cfg.Names.Campaigns, dl} {
		d, ok := td[name]
		if !ok || d.Err != nil {
			return nil, fmt.Errorf("topic %q does not exist (check --topic-prefix)", name)
		}
		parts[name] = int32(len(d.Partitions))
	}

	// The positions of every class redriven before.
	groups, err := adm.ListGroups(ctx)
	if err != nil {
		return nil, fmt.Errorf("list groups: %w", err)
	}
	prefix := cfg.Group + "-redrive."
	var ours []string
	for _, g := range groups.Groups() {
		if strings.HasPrefix(g, prefix) {
			ours = append(ours, g)
		}
	}
	if len(ours) > 0 {
		for g, r := range adm.FetchManyOffsets(ctx, ours...) {
			if r.Err != nil {
				return nil, fmt.Errorf("fetch the offsets of group %s: %w", g, r.Err)
			}
			p.pos[g] = r.Fetched
		}
	}

	ends, err := adm.ListCommittedOffsets(ctx, dl)
	if err != nil {
		return nil, fmt.Errorf("list the last stable offsets of %s: %w", dl, err)
	}
	starts, err := adm.ListStartOffsets(ctx, dl)
	if err != nil {
		return nil, fmt.Errorf("list the start offsets of %s: %w", dl, err)
	}
	for part, o := range ends[dl] {
		if o.Err != nil {
			return nil, fmt.Errorf("%s/%d: %w", dl, part, o.Err)
		}
		p.Ends[part] = o.Offset
		s, _ := starts.Lookup(dl, part)
		p.starts[part] = s.Offset
	}

	byClass := map[Class]*ClassPlan{}
	var mismatch error // the first wrong-partition dead letter the partitioner disagrees with
	rd := kafkaconn.Reader{
		Opts:   append(append([]kgo.Opt{}, cfg.ClientOpts...), kgo.SeedBrokers(cfg.Brokers...)),
		Topics: map[string][]int32{dl: nil},
		Ends:   map[string]map[int32]int64{dl: p.Ends},
	}
	err = rd.Read(ctx, func(r *kgo.Record) error {
		if err := p.count(&cfg, r, parts, byClass); err != nil && mismatch == nil {
			mismatch = err
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	if mismatch != nil {
		return nil, mismatch
	}
	p.Classes = make([]ClassPlan, 0, len(byClass))
	for _, c := range byClass {
		p.Classes = append(p.Classes, *c)
	}
	slices.SortFunc(p.Classes, func(a, b ClassPlan) int {
		return strings.Compare(a.Topic+"\x00"+a.Reason, b.Topic+"\x00"+b.Reason)
	})
	return p, nil
}

// position returns where the class of group g stands in partition part of
// the dead-letter topic.
func (p *Plan) position(g string, part int32) int64 {
	if o, ok := p.pos[g].Lookup(p.Topic, part); ok && o.Err == nil && o.At >= 0 {
		return o.At
	}
	return 0
}

// count adds dead letter r to the plan. It fails when a pending dead letter
// has no destination (ErrPartitionerMismatch).
func (p *Plan) count(cfg *Config, r *kgo.Record, parts map[string]int32, byClass map[Class]*ClassPlan) error {
	l := parse(r)
	if why := cfg.why(l, parts); why != "" {
		p.Skipped[why]++
		return nil
	}
	c := byClass[l.class]
	if c == nil {
		c = &ClassPlan{Class: l.class, Selected: cfg.selects(l.class), Group: GroupName(cfg.Group, l.class)}
		byClass[l.class] = c
	}
	switch {
	case r.Offset < p.position(c.Group, r.Partition):
		c.Handled++
	case !c.Selected:
		c.Unselected++
	case !cfg.Since.IsZero() && r.Timestamp.Before(cfg.Since):
		c.Older++
	default:
		to, err := cfg.destination(r, l, parts)
		if err != nil {
			return err
		}
		c.Pending++
		if len(c.Examples) < cfg.Examples {
			c.Examples = append(c.Examples, Example{
				Partition: r.Partition, Offset: r.Offset, Timestamp: r.Timestamp, Key: r.Key,
				SourcePartition: l.Partition, SourceOffset: l.Offset, Message: l.Message, To: to,
			})
		}
	}
	return nil
}

// leaveGroup takes the static member of group (instance id group) out of
// it, as a closing static member does not: so that the next redrive of the
// class, or anything reading the group, finds it empty at once. A failure
// only delays that until the session times out, so it is logged, not
// returned.
func (c *Config) leaveGroup(group string) {
	cl, err := c.client()
	if err != nil {
		c.Logger.Warn("leave the redrive group", "group", group, "err", err)
		return
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	resp, err := kadm.NewClient(cl).LeaveGroup(ctx, kadm.LeaveGroup(group).InstanceIDs(group).Reason("sponsor deadletter redrive: done"))
	if err == nil {
		err = resp.Error()
	}
	if err != nil {
		c.Logger.Warn("leave the redrive group; it empties when the session times out (10s)", "group", group, "err", err)
	}
}

// Run redrives the selected classes of plan that have pending dead letters,
// one class after the other, each up to (at least) plan.Ends. It returns
// what it sent, also when it fails part way: what it reports was committed.
func Run(ctx context.Context, cfg Config, plan *Plan) (Result, error) {
	res := Result{Sent: map[Class]int64{}}
	if err := cfg.validate(); err != nil {
		return res, err
	}
	start := time.Now()
	total := plan.Total()
	report := func(done bool) {
		if cfg.Progress == nil {
			return
		}
		el := time.Since(start)
		st := Progress{Sent: res.Total(), Total: total, Elapsed: el, ETA: -1, Done: done}
		if s := el.Seconds(); s > 0 {
			st.Rate = float64(st.Sent) / s
		}
		if st.Rate > 0 && total > st.Sent {
			st.ETA = time.Duration(float64(total-st.Sent) / st.Rate * float64(time.Second))
		}
		cfg.Progress(st)
	}
	for _, c := range plan.Classes {
		if !c.Selected || c.Pending == 0 {
			continue
		}
		err := runClass(ctx, &cfg, plan, c, func(n int64) {
			res.Sent[c.Class] += n
			report(false)
		})
		if err != nil {
			res.Elapsed = time.Since(start)
			return res, fmt.Errorf("redrive %s/%s: %w", c.Topic, c.Reason, err)
		}
	}
	res.Elapsed = time.Since(start)
	report(true)
	return res, nil
}

// runClass redrives one class: a transactional session in the class's group
// reads the dead-letter topic from the class's position and, in one
// transaction per batch, sends the batch's dead letters of the class back
// and commits the batch's offsets. It stops once it has read every assigned
// partition up to plan.Ends. sent is called after each commit.
func runClass(ctx context.Context, cfg *Config, plan *Plan, c ClassPlan, sent func(int64)) error {
	log := cfg.Logger.With("group", c.Group)
	dl := plan.Topic
	// assigned are the partitions the group gave this session (nil before
	// the first assignment); the client's callbacks change it.
	var (
		mu       sync.Mutex
		assigned map[int32]bool
	)
	setAssigned := func(m map[string][]int32, on bool) {
		mu.Lock()
		defer mu.Unlock()
		if assigned == nil {
			assigned = map[int32]bool{}
		}
		for _, part := range m[dl] {
			if on {
				assigned[part] = true
			} else {
				delete(assigned, part)
			}
		}
	}
	s, err := kgo.NewGroupTransactSession(append(append([]kgo.Opt{}, cfg.ClientOpts...),
		kgo.SeedBrokers(cfg.Brokers...),
		kgo.ConsumerGroup(c.Group),
		// A static member: a redrive killed in the middle of a join and run
		// again replaces its member at once, where a dynamic one waits for
		// the dead member to expire (up to a minute on the embedded Kafka,
		// whose group coordinator does not expire a member killed while
		// its JoinGroup was parked: see deploy/embedded). It leaves the
		// group when it ends (leaveGroup).
		kgo.InstanceID(c.Group),
		kgo.ConsumeTopics(dl),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		kgo.RequireStableFetchOffsets(),
		kgo.KeepControlRecords(),
		kgo.BlockRebalanceOnPoll(),
		kgo.SessionTimeout(10*time.Second),
		kgo.TransactionalID(c.Group),
		kgo.TransactionTimeout(time.Minute),
		kgo.RecordPartitioner(kgo.ManualPartitioner()),
		kgo.ProducerLinger(5*time.Millisecond),
		kgo.OnPartitionsAssigned(func(_ context.Context, _ *kgo.Client, m map[string][]int32) { setAssigned(m, true) }),
		kgo.OnPartitionsRevoked(func(_ context.Context, _ *kgo.Client, m map[string][]int32) { setAssigned(m, false) }),
		kgo.OnPartitionsLost(func(_ context.Context, _ *kgo.Client, m map[string][]int32) { setAssigned(m, false) }),
	)...)
	if err != nil {
		return fmt.Errorf("transactional session: %w", err)
	}
	// A return from the middle of an iteration still holds the poll's
	// block on rebalances, and Close (leaving the group) would wait for it.
	defer func() { s.AllowRebalance(); s.Close(); cfg.leaveGroup(c.Group) }()
	// Fence a killed predecessor with the same transactional id now, and
	// abort the transaction it left open.
	if _, _, err := s.Client().ProducerID(ctx); err != nil {
		return fmt.Errorf("initialize transactional producer %s: %w", c.Group, err)
	}
	// next is where the session stands in each partition, as far as this
	// function knows: the class's position, then after each record read.
	next := map[int32]int64{}
	for part := range plan.Ends {
		next[part] = max(plan.position(c.Group, part), plan.starts[part])
	}
	// state says whether the session has read every assigned partition up
	// to the planned end, and whether it has partitions at all.
	state := func() (done, joined bool) {
		mu.Lock()
		defer mu.Unlock()
		if assigned == nil {
			return false, false
		}
		for part := range assigned {
			if next[part] < plan.Ends[part] {
				return false, true
			}
		}
		return true, true
	}
	idle := 0
	for {
		s.AllowRebalance()
		done, joined := state()
		if done {
			return nil
		}
		pollCtx, cancel := context.WithTimeout(ctx, time.Second)
		fs := s.PollRecords(pollCtx, cfg.BatchRecords)
		cancel()
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := kafkaconn.FetchError(fs); err != nil {
			return err
		}
		if fs.NumRecords() == 0 {
			// A partition whose readable records end before its last
			// stable offset (a transaction aborted after one that is
			// still open) never reaches it: stop after a quiet while.
			idle++
			switch {
			case joined && idle >= 5:
				log.Warn("no more dead letters to read before the planned end", "next", next, "ends", plan.Ends)
				return nil
			case !joined && idle >= 60:
				return fmt.Errorf("group %s assigned no partition of %s within a minute", c.Group, dl)
			}
			continue
		}
		idle = 0
		before := maps.Clone(next)
		if err := s.Begin(); err != nil {
			return fmt.Errorf("begin transaction: %w", err)
		}
		var (
			n       int64
			perr    error
			pending sync.WaitGroup // every promise, including late ones
			failMu  sync.Mutex
			failed  error
		)
		fs.EachRecord(func(r *kgo.Record) {
			next[r.Partition] = r.Offset + 1
			if r.Attrs.IsControl() || perr != nil {
				return
			}
			l := parse(r)
			if l.class != c.Class || cfg.why(l, plan.parts) != "" || !cfg.Since.IsZero() && r.Timestamp.Before(cfg.Since) {
				return
			}
			to, err := cfg.destination(r, l, plan.parts)
			if err != nil {
				perr = err
				return
			}
			out := &kgo.Record{Topic: l.class.Topic, Partition: to, Key: r.Key, Value: r.Value}
			for _, h := range r.Headers {
				if !deadletter.IsHeader(h.Key) {
					out.Headers = append(out.Headers, h)
				}
			}
			n++
			pending.Add(1)
			s.Produce(ctx, out, func(r *kgo.Record, err error) {
				defer pending.Done()
				if err != nil {
					log.Error("send back", "topic", r.Topic, "partition", r.Partition, "err", err)
					failMu.Lock()
					if failed == nil {
						failed = fmt.Errorf("send back to %s/%d: %w", r.Topic, r.Partition, err)
					}
					failMu.Unlock()
				}
			})
		})
		// franz-go fails only the record on a non-retriable produce error
		// and would commit the rest, with the dead letters' offsets: those
		// dead letters would count as sent back for good. Flush, wait for
		// every promise (a record that failed before it was buffered has
		// its promise run after Flush), and abort if any record failed.
		if err := s.Client().Flush(ctx); err != nil {
			_, aerr := s.End(context.WithoutCancel(ctx), kgo.TryAbort)
			return errors.Join(fmt.Errorf("flush: %w", err), aerr)
		}
		pending.Wait()
		if failed == nil && perr != nil {
			failed = perr
		}
		if failed != nil {
			if _, aerr := s.End(ctx, kgo.TryAbort); aerr != nil {
				return errors.Join(failed, aerr)
			}
			return fmt.Errorf("transaction aborted, nothing of this batch was sent back: %w", failed)
		}
		// End commits the records and the offsets; if the group rebalanced
		// meanwhile, it aborts and the session starts again from the last
		// committed offsets.
		committed, err := s.End(ctx, kgo.TryCommit)
		if err != nil {
			return fmt.Errorf("end transaction: %w", err)
		}
		if !committed {
			log.Warn("transaction aborted; retrying from the last commit")
			next = before
			continue
		}
		if n > 0 {
			log.Info("sent back", "records", n)
		}
		sent(n)
	}
}
