package e2e

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestZombieFenced pauses one of two instances (SIGSTOP) past its session
// timeout, lets the other take over its partitions and go on, then resumes
// it (SIGCONT): whatever the paused instance had in flight must be fenced
// (its transaction carries an offset commit of a generation the group no
// longer has) and invisible. The inbox must end up exactly the oracle's.
func TestZombieFenced(t *testing.T) {
	if testing.Short() {
		t.Skip("zombie test: slow; skipped in -short mode")
	}
	start := time.Now()
	sc := newScenario(scenarioConfig{Seed: 23, Users: 2000, Businesses: 15, Interactions: 12000, Campaigns: 16})
	want, _ := expectedDeliveries(sc.Interactions, sc.Campaigns, defaultOracle)
	const parts = 4
	c := newCluster(t, "zombie", parts)
	c.produceScenario(t, sc)
	logDir := t.TempDir()
	args := func(id string) []string {
		return []string{"run", "--brokers", strings.Join(c.brokers, ","), "--registry", c.registry, "--topic-prefix", c.prefix,
			"--state-dir", filepath.Join(t.TempDir(), id), "--group", c.group, "--instance-id", id, "--http", "127.0.0.1:0",
			"--create-topics", "--partitions", fmt.Sprint(parts), "--fanout-chunk", "40", "--max-poll-records", "150",
			"--session-timeout", "6s", "--log-level", "info"}
	}
	a := startProc(t, "a", args("a"), logDir, 1)
	b := startProc(t, "b", args("b"), logDir, 2)
	t.Cleanup(func() {
		a.cmd.Process.Signal(syscall.SIGCONT) // never leave a stopped process behind
		if t.Failed() {
			if b, err := os.ReadFile(a.log); err == nil {
				n := 0
				for _, l := range bytes.Split(b, []byte("\n")) {
					if bytes.Contains(l, []byte("level=WARN")) || bytes.Contains(l, []byte("level=ERROR")) {
						if n++; n <= 8 {
							t.Logf("a: %s", l)
						}
					}
				}
			}
			dumpTail(t, a.log, 30)
			dumpTail(t, b.log, 30)
		}
	})
	progress := func() int64 { return sum(c.offsets(t, c.names.Inbox, false)) }
	waitFor := func(what string, cond func() bool) {
		t.Helper()
		deadline := time.Now().Add(90 * time.Second)
		for !cond() {
			if err := errors.Join(a.exited(), b.exited()); err != nil {
				t.Fatalf("%s: %v", what, err)
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: not within 90s", what)
			}
			time.Sleep(20 * time.Millisecond) // polling interval
		}
	}
	members := func() int {
		ctx := testContext(t, 10*time.Second)
		gs, err := c.adm.DescribeGroups(ctx, c.group)
		if err != nil {
			return -1
		}
		return len(gs[c.group].Members)
	}
	// Both instances share the work and are busy.
	waitFor("two members", func() bool { return members() == 2 })
	from := progress()
	waitFor("progress with two instances", func() bool { return progress()-from >= 150 })

	// a becomes a zombie: paused, evicted after its session timeout.
	if err := a.cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	stopped := time.Now()
	waitFor("a evicted from the group", func() bool { return members() == 1 })
	evicted := time.Since(stopped)
	from = progress()
	waitFor("b goes on alone", func() bool { return progress()-from >= 50 || len(c.readAll(t, c.names.Inbox)) >= len(want) })

	// a wakes up: its late work must be fenced, then it rejoins.
	if err := a.cmd.Process.Signal(syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	c.waitSettled(t, campaignIDs(sc.Campaigns), 150*time.Second, func() error { return errors.Join(a.exited(), b.exited()) })
	a.term(t)
	b.term(t)
	rep := c.checkInbox(t, sc, want)
	logA, _ := os.ReadFile(a.log)
	var fencedLines []string
	for _, l := range bytes.Split(logA, []byte("\n")) {
		if bytes.Contains(l, []byte("transaction failed")) {
			fencedLines = append(fencedLines, string(l))
		}
	}
	fenced := len(fencedLines)
	for _, l := range fencedLines[:min(3, fenced)] {
		t.Logf("a after waking: %s", l)
	}
	t.Logf("zombie paused %s (evicted after %s); its failed transactions after waking: %d; inbox records %d, deliveries %d, expected %d, duplicates %d, missing %d; %s",
		time.Since(stopped).Round(time.Millisecond), evicted.Round(time.Millisecond), fenced,
		rep.Records, rep.Deliveries, rep.Expected, len(rep.Duplicates), len(rep.Missing), time.Since(start).Round(time.Millisecond))
}
