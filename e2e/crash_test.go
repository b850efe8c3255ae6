package e2e

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

var (
	buildOnce sync.Once
	buildDir  string
	buildBin  string
	buildErr  error
)

func TestMain(m *testing.M) {
	code := m.Run()
	if buildDir != "" {
		os.RemoveAll(buildDir)
	}
	os.Exit(code)
}

// sponsorBinary builds ./cmd/sponsor once per test process.
func sponsorBinary(t testing.TB) string {
	t.Helper()
	buildOnce.Do(func() {
		out, err := exec.Command("go", "env", "GOMOD").Output()
		if err != nil {
			buildErr = fmt.Errorf("go env GOMOD: %w", err)
			return
		}
		root := filepath.Dir(strings.TrimSpace(string(out)))
		if buildDir, buildErr = os.MkdirTemp("", "sponsor-e2e-"); buildErr != nil {
			return
		}
		buildBin = filepath.Join(buildDir, "sponsor")
		cmd := exec.Command("go", "build", "-o", buildBin, "./cmd/sponsor")
		cmd.Dir = root
		if out, err := cmd.CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("go build ./cmd/sponsor: %w\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return buildBin
}

// proc is one `sponsor run` subprocess.
type proc struct {
	name string
	cmd  *exec.Cmd
	log  string
	done chan struct{}
	err  error // of Wait, once done is closed
}

func startProc(t testing.TB, name string, args []string, logDir string, n int) *proc {
	t.Helper()
	return startBinary(t, sponsorBinary(t), name, args, logDir, n)
}

// startBinary starts bin (a sponsor binary, not necessarily this tree's)
// with args, its output in logDir; the test's cleanup SIGKILLs it.
func startBinary(t testing.TB, bin, name string, args []string, logDir string, n int) *proc {
	t.Helper()
	logPath := filepath.Join(logDir, fmt.Sprintf("%02d-%s.log", n, name))
	f, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = f, f
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	p := &proc{name: name, cmd: cmd, log: logPath, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		f.Close()
		close(p.done)
	}()
	t.Cleanup(func() { p.kill(t) })
	return p
}

func (p *proc) exited() error {
	select {
	case <-p.done:
		return fmt.Errorf("%s exited: %v (log %s)", p.name, p.err, p.log)
	default:
		return nil
	}
}

// kill SIGKILLs the process (by its own pid) and waits for it.
func (p *proc) kill(t testing.TB) {
	t.Helper()
	select {
	case <-p.done:
		return
	default:
	}
	p.cmd.Process.Signal(syscall.SIGKILL)
	<-p.done
}

// term stops the process with SIGTERM and checks it exits cleanly.
func (p *proc) term(t testing.TB) {
	t.Helper()
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(30 * time.Second):
		t.Errorf("%s did not exit within 30s of SIGTERM; its goroutines (SIGQUIT) are at the end of %s", p.name, p.log)
		p.cmd.Process.Signal(syscall.SIGQUIT) // Go prints every goroutine's stack and exits
		select {
		case <-p.done:
		case <-time.After(5 * time.Second):
			p.kill(t)
		}
		if dir := os.Getenv("SPONSOR_E2E_KEEP_LOGS"); dir != "" {
			if b, err := os.ReadFile(p.log); err == nil {
				os.WriteFile(filepath.Join(dir, filepath.Base(p.log)), b, 0o644)
			}
		}
		return
	}
	if p.err != nil {
		t.Errorf("%s exited with %v after SIGTERM, want a clean exit (log %s)", p.name, p.err, p.log)
	}
}

// TestCrashRestart runs the sponsor binary against the embedded stack and
// SIGKILLs it at random moments after it made progress (mid fan-out: the
// fan-outs are larger than --fanout-chunk), restarting it with the same
// state folder, an empty one (state rebuilt from the changelog) and a stale
// copy; one phase runs two instances of the group. The inbox must end up
// exactly the oracle's.
func TestCrashRestart(t *testing.T) {
	if testing.Short() {
		t.Skip("crash test: slow; skipped in -short mode")
	}
	start := time.Now()
	sponsorBinary(t)
	sc := newScenario(scenarioConfig{Seed: 11, Users: 3000, Businesses: 20, Interactions: 20000, Campaigns: 24})
	want, tally := expectedDeliveries(sc.Interactions, sc.Campaigns, defaultOracle)
	logTally(t, tally, allOutcomes...)
	const parts = 4
	c := newCluster(t, "crash", parts)
	c.produceScenario(t, sc)
	t.Logf("produced %d campaign records and %d interactions in %s", len(sc.Campaigns), len(sc.Interactions), time.Since(start).Round(time.Millisecond))

	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 42))
	logDir := t.TempDir()
	dirA, dirB := filepath.Join(t.TempDir(), "a"), filepath.Join(t.TempDir(), "b")
	snap := filepath.Join(t.TempDir(), "snapshot")
	args := func(dir, id string) []string {
		return []string{"run", "--brokers", strings.Join(c.brokers, ","), "--registry", c.registry, "--topic-prefix", c.prefix,
			"--state-dir", dir, "--group", c.group, "--instance-id", id, "--http", "127.0.0.1:0",
			"--create-topics", "--partitions", fmt.Sprint(parts), "--fanout-chunk", "50", "--max-poll-records", "500",
			"--session-timeout", "6s", "--log-level", "info"}
	}
	runs := 0
	var procs []*proc
	t.Cleanup(func() {
		if t.Failed() {
			for _, p := range procs[max(0, len(procs)-3):] {
				dumpTail(t, p.log, 25)
			}
		}
	})
	launch := func(name, dir string) *proc {
		runs++
		p := startProc(t, name, args(dir, name), logDir, runs)
		procs = append(procs, p)
		return p
	}
	// progress is how far the inbox has grown (committed or not).
	progress := func() int64 { return sum(c.offsets(t, c.names.Inbox, false)) }
	total := int64(len(want))
	// waitProgress waits until the inbox grew by a random amount, then a
	// random moment more, so that the kill lands anywhere in a transaction.
	waitProgress := func(what string, running ...*proc) {
		t.Helper()
		from := progress()
		need := 30 + rng.Int64N(max(total/14, 31))
		// Never ask for more than half of what is left to deliver (late
		// in the run little is left), nor for anything once all is done.
		left := total - int64(len(c.readAll(t, c.names.Inbox)))
		need = min(need, max(left/2, 0))
		deadline := time.Now().Add(60 * time.Second)
		for progress()-from < need {
			for _, p := range running {
				if err := p.exited(); err != nil {
					t.Fatalf("%s: %v", what, err)
				}
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: the inbox grew by %d records in 60s, want %d", what, progress()-from, need)
			}
			time.Sleep(20 * time.Millisecond) // polling interval
		}
		time.Sleep(time.Duration(rng.IntN(150)) * time.Millisecond) // a random moment, not an assertion
	}
	kills := 0
	last := time.Now()
	kill := func(p *proc) {
		p.kill(t)
		kills++
		t.Logf("kill %d (%s): inbox at %d records (committed or not), %s since the previous kill", kills, p.name, progress(), time.Since(last).Round(time.Millisecond))
		last = time.Now()
	}

	// 1-3: crash and restart with the same state folder; keep a copy
	// after the first crash for the stale-state phase.
	a := launch("a", dirA)
	waitProgress("run 1", a)
	kill(a)
	if err := os.CopyFS(snap, os.DirFS(dirA)); err != nil {
		t.Fatalf("snapshot the state folder: %v", err)
	}
	for i := range 2 {
		a = launch("a", dirA)
		waitProgress(fmt.Sprintf("restart %d", i+1), a)
		kill(a)
	}
	// 4: lost state: rebuilt from the changelog.
	if err := os.RemoveAll(dirA); err != nil {
		t.Fatal(err)
	}
	a = launch("a", dirA)
	waitProgress("restart with an empty state folder", a)
	kill(a)
	// 5: stale state: an older copy of the folder.
	if err := os.RemoveAll(dirA); err != nil {
		t.Fatal(err)
	}
	if err := os.CopyFS(dirA, os.DirFS(snap)); err != nil {
		t.Fatalf("restore the stale copy: %v", err)
	}
	a = launch("a", dirA)
	waitProgress("restart with a stale state folder", a)
	kill(a)
	// 6: two instances of the group; each is killed once while the other runs.
	a = launch("a", dirA)
	b := launch("b", dirB)
	waitProgress("two instances", a, b)
	kill(a)
	waitProgress("b alone after a's crash", b)
	a = launch("a", dirA)
	waitProgress("a back with b", a, b)
	kill(b)
	b = launch("b", dirB)

	c.waitSettled(t, campaignIDs(sc.Campaigns), 150*time.Second, func() error {
		return errors.Join(a.exited(), b.exited())
	})
	a.term(t)
	b.term(t)
	rep := c.checkInbox(t, sc, want)
	t.Logf("kills survived %d, runs %d; inbox records %d, deliveries %d, expected %d, duplicates %d, missing %d, extra %d, wrong %d; %s",
		kills, runs, rep.Records, rep.Deliveries, rep.Expected, len(rep.Duplicates), len(rep.Missing), len(rep.Extra), len(rep.Wrong),
		time.Since(start).Round(time.Millisecond))
	if kills < 5 {
		t.Errorf("kills = %d, want at least 5", kills)
	}
	var restored [][]byte
	for _, p := range procs {
		if b, err := os.ReadFile(p.log); err == nil {
			for _, l := range bytes.Split(b, []byte("\n")) {
				if bytes.Contains(l, []byte("task restored")) && !bytes.Contains(l, []byte("changelog_records=0 ")) {
					restored = append(restored, l)
				}
			}
		}
	}
	t.Logf("restores that replayed changelog records: %d", len(restored))
}

// TestCrashRestartNegativeControl runs the same kind of crash test with
// exactly-once turned off (--unsafe-no-transactions: plain produce,
// auto-committed offsets) and checks that the checker does report
// duplicates or losses there: a checker that never fails proves nothing.
func TestCrashRestartNegativeControl(t *testing.T) {
	if testing.Short() {
		t.Skip("crash test: slow; skipped in -short mode")
	}
	start := time.Now()
	sc := newScenario(scenarioConfig{Seed: 5, Users: 1500, Businesses: 10, Interactions: 8000, Campaigns: 16})
	want, _ := expectedDeliveries(sc.Interactions, sc.Campaigns, defaultOracle)
	const parts = 4
	c := newCluster(t, "unsafe", parts)
	c.produceScenario(t, sc)
	dir := filepath.Join(t.TempDir(), "state")
	logDir := t.TempDir()
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 7))
	args := []string{"run", "--brokers", strings.Join(c.brokers, ","), "--registry", c.registry, "--topic-prefix", c.prefix,
		"--state-dir", dir, "--group", c.group, "--instance-id", "a", "--http", "127.0.0.1:0",
		"--create-topics", "--partitions", fmt.Sprint(parts), "--fanout-chunk", "50", "--max-poll-records", "200",
		"--session-timeout", "6s", "--unsafe-no-transactions"}
	progress := func() int64 { return sum(c.offsets(t, c.names.Inbox, false)) }
	kills := 0
	for run := range 3 {
		p := startProc(t, "unsafe", args, logDir, run)
		if run == 2 {
			// The last run: wait until the group has committed the whole
			// input and the inbox stopped growing over two looks 1s apart.
			ends := c.offsets(t, c.names.Interactions, false)
			deadline := time.Now().Add(60 * time.Second)
			last := int64(-1)
			for time.Now().Before(deadline) {
				ctx := testContext(t, 10*time.Second)
				committed, err := c.adm.FetchOffsets(ctx, c.group)
				caught := err == nil
				for q, end := range ends {
					if o, ok := committed.Lookup(c.names.Interactions, q); !ok || o.At < end {
						caught = false
					}
				}
				now := progress()
				if caught && now == last {
					break
				}
				last = now
				time.Sleep(time.Second) // look again: the inbox has no changelog to tell when it is done
			}
			p.term(t)
			break
		}
		from := progress()
		need := 10 + rng.Int64N(60)
		deadline := time.Now().Add(60 * time.Second)
		for progress()-from < need && time.Now().Before(deadline) {
			if err := p.exited(); err != nil {
				t.Fatal(err)
			}
			time.Sleep(10 * time.Millisecond)
		}
		time.Sleep(time.Duration(rng.IntN(100)) * time.Millisecond)
		p.kill(t)
		kills++
	}
	recs := c.readAll(t, c.names.Inbox)
	rep := compareInbox(c.serde, recs, want, sc.Campaigns, parts)
	t.Logf("exactly-once off: kills %d; inbox records %d, deliveries %d, expected %d, duplicates %d, missing %d, extra %d; %s",
		kills, rep.Records, rep.Deliveries, rep.Expected, len(rep.Duplicates), len(rep.Missing), len(rep.Extra), time.Since(start).Round(time.Millisecond))
	if len(rep.Duplicates)+len(rep.Missing) == 0 {
		t.Errorf("with exactly-once off and %d kills, the checker found no duplicate and no missing delivery: it cannot be trusted", kills)
	}
}
