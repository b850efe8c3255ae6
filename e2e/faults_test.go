package e2e

import (
	"bufio"
	"fmt"
	"math/rand/v2"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/sponsored/sponsor/pipeline"
)

// TestInjectedFaults runs the pipeline in-process on kfake while the broker
// answers a few percent of the pipeline's requests with errors, chosen at
// random from a seeded generator:
//
//   - produce: NOT_LEADER_OR_FOLLOWER (retried by the client),
//     REQUEST_TIMED_OUT after the append (the client retries a write the
//     broker already has: idempotence must dedupe it), INVALID_RECORD (not
//     retriable: the transaction must not commit without the record);
//   - EndTxn: CONCURRENT_TRANSACTIONS and NOT_COORDINATOR (retried),
//     TRANSACTION_ABORTABLE on a commit (the transaction aborts);
//   - TxnOffsetCommit: COORDINATOR_NOT_AVAILABLE and NOT_COORDINATOR (the
//     transaction aborts), REQUEST_TIMED_OUT after the commit was applied;
//   - fetch: retriable errors on the interactions, the campaigns and the
//     changelog (the restores), and a non-retriable one on the interactions;
//   - coordinator moves (kfake's RehashCoordinators over three brokers) and
//     partition leader moves (ShufflePartitionLeaders);
//
// with small polls and fan-out chunks, so that there are many transactions
// for the faults to hit, and two restarts while the faults are on (one with
// an empty state folder, rebuilt from the changelog under fetch faults, one
// with its folder). Then the faults stop, the pipeline settles, and the
// inbox must be exactly the oracle's.
func TestInjectedFaults(t *testing.T) {
	if testing.Short() {
		t.Skip("fault injection: slow; skipped in -short mode")
	}
	if os.Getenv("KAFKA_BROKERS") != "" {
		t.Skip("fault injection needs kfake's control hooks; KAFKA_BROKERS is set")
	}
	start := time.Now()
	sc := newScenario(scenarioConfig{Seed: 41, Users: 600, Businesses: 20, Interactions: 5000, Campaigns: 16})
	want, _ := expectedDeliveries(sc.Interactions, sc.Campaigns, defaultOracle)
	c := newCluster(t, "faults", 4)
	c.produceScenario(t, sc)
	kc := c.stack.Cluster
	// Two more brokers, so that coordinators and leaders have somewhere to
	// move to. Clients learn of them from the metadata.
	for range 2 {
		if _, _, err := kc.AddNode(-1, 0); err != nil {
			t.Fatalf("add a broker: %v", err)
		}
	}
	const instance = "faults"
	txnID := c.group + "-" + instance
	inj := newFaultInjector(kc, 20260918, c, txnID)

	var (
		runners []*runner
		logs    []string
	)
	start1 := func(dir string) *runner {
		log, path := fileLogger(t, fmt.Sprintf("runner-%d.log", len(runners)))
		h := startRunner(t, c, dir, func(cfg *pipeline.Config) {
			cfg.MaxPollRecords = 100
			cfg.FanoutChunk = 30
			cfg.InstanceID = instance
			cfg.Logger = log
		})
		runners = append(runners, h)
		logs = append(logs, path)
		return h
	}
	total := func(f func(*pipeline.Stats) int64) int64 {
		var n int64
		for _, h := range runners {
			n += f(h.r.Stats())
		}
		return n
	}
	processed := func() int64 { return total(func(s *pipeline.Stats) int64 { return s.Interactions.Load() }) }
	t.Cleanup(func() {
		if t.Failed() {
			for _, p := range logs {
				faultLogWarnings(t, p, 15)
			}
			t.Logf("faults injected so far: %s", inj.summary())
		}
	})

	// The fault phase ends when the runners have processed frac of the
	// interactions, or at a cap (a bound on the test's length, not an
	// assertion: a slow machine only shortens the phase, which is logged).
	faultCap := time.Now().Add(40 * time.Second)
	waitProgress := func(h *runner, frac float64) {
		t.Helper()
		goal := int64(frac * float64(len(sc.Interactions)))
		// Stats().Interactions of a runner counts what it committed, so
		// the sum over runners can fall a little short of the total
		// (a runner stopped between a commit and its count): the last
		// phase ends when the runner owns every task and has no lag.
		reached := func() bool {
			if frac < 1 {
				return processed() >= goal
			}
			st := h.r.Stats()
			return processed() >= goal*9/10 && st.TasksAssigned.Load() == int64(c.parts) && st.Lag() == 0
		}
		for !reached() && time.Now().Before(faultCap) {
			if err := h.alive(); err != nil {
				t.Fatalf("runner stopped under injected faults: %v (faults so far: %s)", err, inj.summary())
			}
			time.Sleep(100 * time.Millisecond) // a polling interval, not an assertion
		}
		t.Logf("%s: processed %d of %d interactions; transactions %d, aborts %d; faults %s",
			time.Since(start).Round(time.Millisecond), processed(), len(sc.Interactions),
			total(func(s *pipeline.Stats) int64 { return s.Transactions.Load() }), total(func(s *pipeline.Stats) int64 { return s.Aborts.Load() }), inj.summary())
	}

	inj.start()
	dir := t.TempDir()
	h := start1(dir)
	waitProgress(h, 0.3)
	// Restart with an empty state folder: the state is rebuilt from the
	// changelog while its fetches fail now and then.
	h.stop(t)
	dir = t.TempDir()
	h = start1(dir)
	waitProgress(h, 0.6)
	// Restart with the state folder: restored from its checkpoint.
	h.stop(t)
	h = start1(dir)
	waitProgress(h, 1)
	if !time.Now().Before(faultCap) {
		t.Logf("the fault phase ended at its time cap, with %d of %d interactions processed", processed(), len(sc.Interactions))
	}
	faultsOn := time.Since(start)
	inj.stop()

	c.waitSettled(t, campaignIDs(sc.Campaigns), 60*time.Second, h.alive)
	rep := c.checkInbox(t, sc, want)

	counts := inj.counts()
	var restored int64
	for _, h := range runners {
		restored += h.r.Stats().RestoredRecords.Load()
	}
	txns := total(func(s *pipeline.Stats) int64 { return s.Transactions.Load() })
	aborts := total(func(s *pipeline.Stats) int64 { return s.Aborts.Load() })
	t.Logf("faults injected: %s", inj.summary())
	t.Logf("interactions %d; inbox records %d, deliveries %d, expected %d, duplicates %d, missing %d, extra %d, wrong %d; "+
		"runners %d, transactions %d, aborts %d, changelog records restored %d; faults on for %s, total %s",
		len(sc.Interactions), rep.Records, rep.Deliveries, rep.Expected, len(rep.Duplicates), len(rep.Missing), len(rep.Extra), len(rep.Wrong),
		len(runners), txns, aborts, restored, faultsOn.Round(time.Millisecond), time.Since(start).Round(time.Millisecond))

	// The test must not pass vacuously: every kind of fault hit, and the
	// faults really cost transactions.
	for _, k := range inj.kinds {
		if counts[k.name] == 0 {
			t.Errorf("fault %q was never injected", k.name)
		}
	}
	if counts["coordinator moves"] == 0 && faultSelected("coordinator moves") {
		t.Errorf("no coordinator moved")
	}
	if counts["leader moves"] == 0 && faultSelected("leader moves") {
		t.Errorf("no partition leader moved")
	}
	if aborts == 0 {
		t.Errorf("Stats().Aborts = 0 over all runners: the faults aborted no transaction")
	}
	if restored == 0 {
		t.Errorf("no changelog record was restored: the restart with an empty state folder restored nothing")
	}
}

// injFaultKind is one error the faultInjector answers some requests with.
type injFaultKind struct {
	name  string
	group string // kinds of one group share a request: at most one of them answers it
	rate  float64
	fault kfake.Fault
	h     *kfake.FaultHandle
}

// faultInjector answers a seeded random few percent of the pipeline's requests
// with errors, through kfake's faults, and moves coordinators and leaders
// around while it is on.
type faultInjector struct {
	kc    *kfake.Cluster
	kinds []*injFaultKind
	on    atomic.Bool
	done  chan struct{}
	wg    sync.WaitGroup
	keys  []string // coordinator keys whose moves are counted

	mu        sync.Mutex
	rng       *rand.Rand
	decided   map[string]faultDecision // per group: the last request and the kind chosen for it
	seen      map[string]int           // requests per group
	coordMove int
	// leaderMoves counts the shuffles of every partition's leader.
	leaderMoves int
}

type faultDecision struct {
	req  kmsg.Request
	kind *injFaultKind // nil: not faulted
}

func newFaultInjector(kc *kfake.Cluster, seed uint64, c *cluster, txnID string) *faultInjector {
	inj := &faultInjector{
		kc: kc, rng: rand.New(rand.NewPCG(seed, seed^0x5eed)), decided: map[string]faultDecision{}, seen: map[string]int{},
		keys: []string{txnID, c.group},
	}
	transactional := func(req kmsg.Request) bool {
		p, ok := req.(*kmsg.ProduceRequest)
		return ok && p.TransactionID != nil && *p.TransactionID == txnID
	}
	commit := func(req kmsg.Request) bool {
		e, ok := req.(*kmsg.EndTxnRequest)
		return ok && e.Commit
	}
	add := func(group, name string, rate float64, f kfake.Fault, only func(kmsg.Request) bool) {
		if !faultSelected(name) {
			return
		}
		k := &injFaultKind{name: name, group: group, rate: rate, fault: f}
		k.fault.Count = -1
		k.fault.When = func(req kmsg.Request) bool {
			if only != nil && !only(req) {
				return false
			}
			return inj.decide(group, req) == k
		}
		inj.kinds = append(inj.kinds, k)
	}
	produce := []kmsg.Key{kmsg.Produce}
	add("produce", "produce NOT_LEADER_OR_FOLLOWER", 0.03, kfake.Fault{Keys: produce, Err: kerr.NotLeaderForPartition}, transactional)
	add("produce", "produce REQUEST_TIMED_OUT (appended)", 0.02, kfake.Fault{Keys: produce, Err: kerr.RequestTimedOut}, transactional)
	add("produce", "produce INVALID_RECORD (not retriable)", 0.02, kfake.Fault{Keys: produce, Err: kerr.InvalidRecord}, transactional)

	endTxn := []kmsg.Key{kmsg.EndTxn}
	add("endtxn", "EndTxn CONCURRENT_TRANSACTIONS", 0.03, kfake.Fault{Keys: endTxn, TxnID: txnID, Err: kerr.ConcurrentTransactions}, nil)
	add("endtxn", "EndTxn NOT_COORDINATOR", 0.02, kfake.Fault{Keys: endTxn, TxnID: txnID, Err: kerr.NotCoordinator}, nil)
	add("endtxn-commit", "EndTxn(commit) TRANSACTION_ABORTABLE", 0.03, kfake.Fault{Keys: endTxn, TxnID: txnID, Err: kerr.TransactionAbortable}, commit)

	toc := []kmsg.Key{kmsg.TxnOffsetCommit}
	add("txnoffsetcommit", "TxnOffsetCommit COORDINATOR_NOT_AVAILABLE", 0.03, kfake.Fault{Keys: toc, TxnID: txnID, Err: kerr.CoordinatorNotAvailable}, nil)
	add("txnoffsetcommit", "TxnOffsetCommit NOT_COORDINATOR", 0.02, kfake.Fault{Keys: toc, TxnID: txnID, Err: kerr.NotCoordinator}, nil)
	add("txnoffsetcommit", "TxnOffsetCommit REQUEST_TIMED_OUT (applied)", 0.02, kfake.Fault{Keys: toc, TxnID: txnID, Err: kerr.RequestTimedOut}, nil)

	fetch := []kmsg.Key{kmsg.Fetch}
	add("fetch-interactions", "fetch interactions NOT_LEADER_OR_FOLLOWER", 0.03, kfake.Fault{Keys: fetch, Topic: c.names.Interactions, Err: kerr.NotLeaderForPartition}, nil)
	add("fetch-interactions", "fetch interactions KAFKA_STORAGE_ERROR", 0.02, kfake.Fault{Keys: fetch, Topic: c.names.Interactions, Err: kerr.KafkaStorageError}, nil)
	add("fetch-interactions", "fetch interactions UNKNOWN_SERVER_ERROR (not retriable)", 0.01, kfake.Fault{Keys: fetch, Topic: c.names.Interactions, Err: kerr.UnknownServerError}, nil)
	add("fetch-campaigns", "fetch campaigns NOT_LEADER_OR_FOLLOWER", 0.03, kfake.Fault{Keys: fetch, Topic: c.names.Campaigns, Err: kerr.NotLeaderForPartition}, nil)
	// A restore makes few fetches: a higher rate, so that each restore
	// meets some.
	add("fetch-changelog", "fetch changelog NOT_LEADER_OR_FOLLOWER", 0.15, kfake.Fault{Keys: fetch, Topic: c.names.Changelog, Err: kerr.NotLeaderForPartition}, nil)
	add("fetch-changelog", "fetch changelog KAFKA_STORAGE_ERROR", 0.15, kfake.Fault{Keys: fetch, Topic: c.names.Changelog, Err: kerr.KafkaStorageError}, nil)
	return inj
}

// faultSelected reports whether the fault named name is injected: all of
// them, unless SPONSOR_FAULTS lists substrings of the names to inject (to
// find which fault a failure comes from: SPONSOR_FAULTS=INVALID_RECORD,
// SPONSOR_FAULTS=coordinator moves,fetch).
func faultSelected(name string) bool {
	only := os.Getenv("SPONSOR_FAULTS")
	if only == "" {
		return true
	}
	for _, s := range strings.Split(only, ",") {
		if s != "" && strings.Contains(name, s) {
			return true
		}
	}
	return false
}

// faultWarmUp is the requests of a group after which a kind of it that has not
// answered any yet answers the next one: every kind is then injected at
// least once however the dice fall, as long as the requests come.
const faultWarmUp = 10

// decide picks, once per request (kfake calls When for each entity of a
// request, on its one goroutine), the kind of group that answers req, or
// none.
func (inj *faultInjector) decide(group string, req kmsg.Request) *injFaultKind {
	inj.mu.Lock()
	defer inj.mu.Unlock()
	if d, ok := inj.decided[group]; ok && d.req == req {
		return d.kind
	}
	d := faultDecision{req: req}
	if inj.on.Load() {
		inj.seen[group]++
		var mine []*injFaultKind
		for _, k := range inj.kinds {
			if k.group == group {
				mine = append(mine, k)
			}
		}
		x := inj.rng.Float64()
		for _, k := range mine {
			if x < k.rate {
				d.kind = k
				break
			}
			x -= k.rate
		}
		warmUp := faultWarmUp
		if group == "fetch-changelog" || group == "fetch-campaigns" {
			// Restores make few fetches, all of them soon after a
			// start, and the campaign reader few more (it waits for
			// new campaigns): a kind not injected yet answers the next
			// one. (A faster pipeline once finished the fault phase
			// after fewer than faultWarmUp campaign fetches.)
			warmUp = 0
		}
		if d.kind == nil && inj.seen[group] > warmUp {
			for _, k := range mine {
				if k.h.Hits() == 0 {
					d.kind = k
					break
				}
			}
		}
	}
	inj.decided[group] = d
	return d.kind
}

// start installs the faults and starts moving coordinators and leaders.
func (inj *faultInjector) start() {
	for _, k := range inj.kinds {
		k.h = inj.kc.Fault(k.fault)
	}
	inj.on.Store(true)
	inj.done = make(chan struct{})
	inj.wg.Add(1)
	go func() {
		defer inj.wg.Done()
		tick := time.NewTicker(300 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-inj.done:
				return
			case <-tick.C:
			}
			inj.mu.Lock()
			rehash := inj.rng.Float64() < 0.3 && faultSelected("coordinator moves")
			shuffle := inj.rng.Float64() < 0.2 && faultSelected("leader moves")
			inj.mu.Unlock()
			if shuffle {
				inj.kc.ShufflePartitionLeaders()
				inj.mu.Lock()
				inj.leaderMoves++
				inj.mu.Unlock()
			}
			if rehash {
				before := inj.coordinators()
				inj.kc.RehashCoordinators()
				after := inj.coordinators()
				moved := 0
				for i := range before {
					if before[i] != after[i] {
						moved++
					}
				}
				inj.mu.Lock()
				inj.coordMove += moved
				inj.mu.Unlock()
			}
		}
	}()
}

func (inj *faultInjector) coordinators() []int32 {
	var out []int32
	for _, k := range inj.keys {
		out = append(out, inj.kc.CoordinatorFor(k))
	}
	return out
}

// stop ends every fault and the moves.
func (inj *faultInjector) stop() {
	inj.on.Store(false)
	close(inj.done)
	inj.wg.Wait()
	for _, k := range inj.kinds {
		k.h.Remove()
	}
}

// counts returns the requests each kind answered, and the moves.
func (inj *faultInjector) counts() map[string]int {
	out := map[string]int{}
	for _, k := range inj.kinds {
		if k.h != nil {
			out[k.name] = k.h.Hits()
		}
	}
	inj.mu.Lock()
	out["coordinator moves"] = inj.coordMove
	out["leader moves"] = inj.leaderMoves
	inj.mu.Unlock()
	return out
}

func (inj *faultInjector) summary() string {
	counts := inj.counts()
	var parts []string
	sum := 0
	for _, k := range inj.kinds {
		parts = append(parts, fmt.Sprintf("%s %d", k.name, counts[k.name]))
		sum += counts[k.name]
	}
	parts = append(parts, fmt.Sprintf("coordinator moves %d, leader shuffles %d", counts["coordinator moves"], counts["leader moves"]))
	return fmt.Sprintf("%d error answers [%s]", sum, strings.Join(parts, ", "))
}

// faultLogWarnings logs the first n warnings and errors of a runner's log, and
// how many there were of each message.
func faultLogWarnings(t testing.TB, path string, n int) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		return
	}
	defer f.Close()
	byMsg := map[string]int{}
	var first []string
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		l := sc.Text()
		if !strings.Contains(l, "level=WARN") && !strings.Contains(l, "level=ERROR") {
			continue
		}
		msg := l
		if i := strings.Index(l, "msg="); i >= 0 {
			msg = l[i:]
			if j := strings.Index(msg, " err="); j >= 0 {
				msg = msg[:j]
			}
		}
		byMsg[msg]++
		if len(first) < n {
			first = append(first, l)
		}
	}
	var msgs []string
	for m, k := range byMsg {
		msgs = append(msgs, fmt.Sprintf("%d x %s", k, m))
	}
	slices.Sort(msgs)
	t.Logf("%s: warnings by message:\n%s\nfirst %d:\n%s", path, strings.Join(msgs, "\n"), len(first), strings.Join(first, "\n"))
}
