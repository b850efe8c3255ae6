package pipeline

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sponsored/sponsor/kafkaconn"
	"github.com/sponsored/sponsor/state"
)

// standbyCheckEvery is how often the standbys' lag is measured and a
// failed follower is started again.
const standbyCheckEvery = time.Second

// standbys follows the changelog partitions the group's balancer made this
// instance a standby of (Config.StandbyReplicas): each followed partition
// is restored continuously into its own range of the store, with its
// checkpoint, so that a restore when the partition is assigned here only
// reads the tail.
//
// A follower applies only committed changelog records (read_committed) and
// flushes them with the offset after the last one read, so its checkpoint
// is never ahead of committed state. A partition's range has one writer at
// a time: the instance claims a partition (claim) before it restores it
// for a task, which stops its follower and waits for it to end, and
// releases it (release) once the task is dropped; a claimed partition is
// never followed.
//
// Concurrency: want comes from the group client's goroutine (the
// balancer's onStandbys), claim and release from the handover callbacks
// and the loop; mu guards want, claimed and running. run's goroutine
// starts and stops followers; each follower owns its partition's range
// until its done is closed.
type standbys struct {
	log       *slog.Logger
	stats     *Stats
	adm       *kadm.Client
	store     *state.Store
	changelog string
	opts      []kgo.Opt // seed brokers and security, for the followers' consumers

	wake chan struct{} // run reconciles soon

	mu      sync.Mutex
	want    map[int32]bool      // the standbys of the last assignment
	claimed map[int32]bool      // partitions the instance restores or owns
	running map[int32]*follower // followers started and not stopped
	// stopped is what the followers stopped because the assignment no
	// longer wanted them did: the assignment that makes a partition
	// active here takes its standby away first (ParseSyncAssignment runs
	// before the partition is claimed), and claim reports it still.
	stopped map[int32]promotion
}

// follower is the follow of one changelog partition.
type follower struct {
	p       int32
	next    atomic.Int64 // the next changelog offset, as of its last flush; -1 before the first
	applied atomic.Int64 // changelog records applied
	// contacts is the partition's contact filter, built when the follow
	// starts and kept up with every record applied (flushed or not: a
	// superset); nil until then. Read once done is closed.
	contacts *state.ContactFilter
	cancel   context.CancelFunc
	done     chan struct{}
	err      error // why it ended; read once done is closed
}

func newStandbys(log *slog.Logger, stats *Stats, adm *kadm.Client, store *state.Store, changelog string, opts []kgo.Opt) *standbys {
	return &standbys{log: log, stats: stats, adm: adm, store: store, changelog: changelog, opts: opts,
		wake: make(chan struct{}, 1), want: map[int32]bool{}, claimed: map[int32]bool{}, running: map[int32]*follower{}, stopped: map[int32]promotion{}}
}

// promotion returns what f did; f has ended.
func (f *follower) promotion() promotion {
	return promotion{followed: true, next: f.next.Load(), applied: f.applied.Load(), contacts: f.contacts}
}

// set makes ps the partitions to follow (the balancer's onStandbys).
func (s *standbys) set(ps []int32) {
	s.mu.Lock()
	// The filters of the followers an earlier assignment stopped are not
	// worth their memory any more: a claim follows the assignment that
	// stopped them at once, or never.
	for p, pr := range s.stopped {
		pr.contacts = nil
		s.stopped[p] = pr
	}
	s.want = map[int32]bool{}
	for _, p := range ps {
		s.want[p] = true
	}
	s.mu.Unlock()
	s.poke()
}

func (s *standbys) poke() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// promotion is what a follower had done when its partition was claimed.
type promotion struct {
	followed bool  // a follower was running
	next     int64 // its checkpoint: the restore continues from it
	applied  int64 // changelog records it applied
	// contacts is its contact filter, nil if it had none: it holds every
	// contact of the state at checkpoint next, so a task whose restore
	// applied nothing after next can take it instead of building one.
	contacts *state.ContactFilter
}

// claim stops the followers of ps and waits for them to end, and keeps ps
// from being followed until release: the caller is about to restore them
// for tasks. It returns what the followers did, by partition.
func (s *standbys) claim(ps []int32) map[int32]promotion {
	s.mu.Lock()
	var stop []*follower
	out := map[int32]promotion{}
	for _, p := range ps {
		s.claimed[p] = true
		if f, ok := s.running[p]; ok {
			stop = append(stop, f)
			delete(s.running, p)
		} else if pr, ok := s.stopped[p]; ok {
			out[p] = pr
		}
		delete(s.stopped, p)
	}
	s.mu.Unlock()
	for _, f := range stop {
		f.cancel()
		<-f.done
		out[f.p] = f.promotion()
	}
	if len(stop) > 0 {
		s.updateLag(nil)
	}
	return out
}

// release lets ps be followed again, once their tasks are dropped (nil:
// every partition claimed).
func (s *standbys) release(ps []int32) {
	s.mu.Lock()
	if ps == nil {
		clear(s.claimed)
	}
	for _, p := range ps {
		delete(s.claimed, p)
	}
	s.mu.Unlock()
	s.poke()
}

// run starts and stops the followers as the assignment and the claims
// say, and measures their lag, until ctx ends; then it stops them all.
func (s *standbys) run(ctx context.Context) {
	tick := time.NewTicker(standbyCheckEvery)
	defer tick.Stop()
	defer s.stopAll()
	for {
		s.reconcile(ctx)
		select {
		case <-ctx.Done():
			return
		case <-s.wake:
		case <-tick.C:
			s.measure(ctx)
		}
	}
}

// reconcile stops the followers no longer wanted, notes those that
// failed, and starts the wanted ones that do not run.
func (s *standbys) reconcile(ctx context.Context) {
	s.mu.Lock()
	var stop []*follower
	for p, f := range s.running {
		select {
		case <-f.done:
			delete(s.running, p)
			if f.err != nil && ctx.Err() == nil {
				s.log.Warn("standby follower failed; it starts again", "partition", p, "changelog", s.changelog, "err", f.err, "retry_in", standbyCheckEvery)
			}
			continue // started again below, at the next check
		default:
		}
		if !s.want[p] || s.claimed[p] {
			// It stays in running until it ended, so that a claim
			// meanwhile waits for it too.
			stop = append(stop, f)
			f.cancel()
		}
	}
	for p := range s.want {
		if _, ok := s.running[p]; ok || s.claimed[p] || ctx.Err() != nil {
			continue
		}
		delete(s.stopped, p)
		fctx, cancel := context.WithCancel(ctx)
		f := &follower{p: p, cancel: cancel, done: make(chan struct{})}
		f.next.Store(-1)
		s.running[p] = f
		go func() {
			defer close(f.done)
			f.err = s.follow(fctx, f)
		}()
	}
	s.mu.Unlock()
	for _, f := range stop {
		f.cancel()
		<-f.done
	}
	s.mu.Lock()
	for _, f := range stop {
		if s.running[f.p] == f { // else a claim took it and reports it
			delete(s.running, f.p)
			s.stopped[f.p] = f.promotion()
		}
	}
	s.mu.Unlock()
	if len(stop) > 0 {
		s.updateLag(nil)
	}
}

func (s *standbys) stopAll() {
	s.mu.Lock()
	fs := slices.Collect(maps.Values(s.running))
	clear(s.running)
	s.mu.Unlock()
	for _, f := range fs {
		f.cancel()
		<-f.done
	}
	s.updateLag(map[int32]int64{})
}

// measure sets the standby metrics: per followed partition, its last
// stable offset minus the follower's checkpoint.
func (s *standbys) measure(ctx context.Context) {
	s.mu.Lock()
	fs := slices.Collect(maps.Values(s.running))
	s.mu.Unlock()
	if len(fs) == 0 {
		s.updateLag(map[int32]int64{})
		return
	}
	ctx, cancel := context.WithTimeout(ctx, standbyCheckEvery)
	defer cancel()
	stable, err := s.adm.ListCommittedOffsets(ctx, s.changelog)
	if err != nil {
		return // the next check tries again
	}
	lag := map[int32]int64{}
	for _, f := range fs {
		if o, ok := stable.Lookup(s.changelog, f.p); ok && o.Err == nil {
			lag[f.p] = max(o.Offset-f.next.Load(), 0)
		}
	}
	s.updateLag(lag)
}

// updateLag publishes lag (nil: only drop the partitions no longer
// followed).
func (s *standbys) updateLag(lag map[int32]int64) {
	s.mu.Lock()
	running := map[int32]bool{}
	for p := range s.running {
		running[p] = true
	}
	s.mu.Unlock()
	s.stats.setStandbyLag(lag, running)
}

// localCheckpoints returns the checkpoint of each of the nparts partitions
// store holds state of, for the balancer's join metadata. A partition
// whose checkpoint cannot be read is left out: it is then no better a
// candidate than a member without its state.
func localCheckpoints(store *state.Store, nparts int32) map[int32]int64 {
	cps := map[int32]int64{}
	for p := range nparts {
		if c, err := store.Checkpoint(p); err == nil && c >= 0 {
			cps[p] = c
		}
	}
	return cps
}

// follow restores partition f.p continuously, until ctx ends or reading
// fails: from the store's checkpoint when the changelog still holds it
// (else from the changelog's start, the partition's range dropped first),
// read_committed, each fetch flushed with the offset after it.
func (s *standbys) follow(ctx context.Context, f *follower) error {
	p := f.p
	starts, err := s.adm.ListStartOffsets(ctx, s.changelog)
	if err != nil {
		return fmt.Errorf("list changelog start offsets: %w", err)
	}
	ends, err := s.adm.ListEndOffsets(ctx, s.changelog)
	if err != nil {
		return fmt.Errorf("list changelog end offsets: %w", err)
	}
	so, ok1 := starts.Lookup(s.changelog, p)
	eo, ok2 := ends.Lookup(s.changelog, p)
	if !ok1 || !ok2 || so.Err != nil || eo.Err != nil {
		return fmt.Errorf("changelog %s partition %d: offsets unavailable (start %v, end %v)", s.changelog, p, so.Err, eo.Err)
	}
	from, err := s.store.Checkpoint(p)
	if err != nil {
		return err
	}
	if !checkpointUsable(from, so.Offset, eo.Offset) {
		if err := s.store.DropPartition(p); err != nil {
			return err
		}
		from = so.Offset
	}
	f.next.Store(from)
	contacts, err := s.store.ContactFilter(p)
	if err != nil {
		return err
	}
	cl, err := kgo.NewClient(append(slices.Clone(s.opts),
		kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{s.changelog: {p: kgo.NewOffset().At(from)}}),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		// Markers move the position as records do, so the checkpoint
		// reaches the end of a partition whose last records are markers.
		kgo.KeepControlRecords(),
		// An offset the changelog no longer has (records deleted) is an
		// error, not a silent jump: the follow starts again and rebuilds.
		kgo.ConsumeResetOffset(kgo.NoResetOffset()),
	)...)
	if err != nil {
		return fmt.Errorf("standby consumer: %w", err)
	}
	defer cl.Close()
	rs := s.store.NewRestorer(p)
	defer rs.Close() // what is not flushed is not in the checkpoint either
	s.log.Debug("standby follows", "partition", p, "changelog", s.changelog, "from", from)
	next := from
	f.contacts = contacts // from here on, every record applied is in it
	for {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			return nil
		}
		if err := kafkaconn.FetchError(fs); err != nil {
			if errors.Is(err, context.Canceled) {
				return nil
			}
			return err
		}
		moved := false
		var aerr error
		fs.EachRecord(func(r *kgo.Record) {
			if aerr != nil {
				return
			}
			next, moved = r.Offset+1, true
			if r.Attrs.IsControl() {
				return
			}
			if aerr = rs.Add(r.Key, r.Value); aerr == nil {
				f.applied.Add(1)
				if r.Value != nil {
					contacts.AddChangelog(r.Key)
				}
			}
		})
		if aerr != nil {
			return fmt.Errorf("apply changelog %s/%d: %w", s.changelog, p, aerr)
		}
		if !moved {
			continue
		}
		if err := rs.Flush(next); err != nil {
			return err
		}
		f.next.Store(next)
	}
}
