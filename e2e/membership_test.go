package e2e

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
)

// TestStaticMembership checks what each way of stopping an instance does to
// its group, with two instances a and b and a session timeout (60s) longer
// than any wait here, so that a partition that moves before it moved
// because of a leave, not an expiry:
//
//   - SIGTERM (a restart): b stops but stays in the group as a static member
//     with its partitions, and a keeps its own; started again with the same
//     instance id, b gets its partitions back and a still has its own.
//   - SIGUSR1 (scaling in): b leaves before it exits, and a takes every
//     partition at once.
//   - --leave-group-on-shutdown makes SIGTERM leave too; --dynamic members
//     leave on SIGTERM as they always did.
//
// Through all of it the inbox must end up exactly the oracle's.
func TestStaticMembership(t *testing.T) {
	if testing.Short() {
		t.Skip("membership test: slow; skipped in -short mode")
	}
	sc := newScenario(scenarioConfig{Seed: 57, Users: 1500, Businesses: 12, Interactions: 8000, Campaigns: 12})
	want, _ := expectedDeliveries(sc.Interactions, sc.Campaigns, defaultOracle)
	const parts = 4
	c := newCluster(t, "members", parts)
	c.produceScenario(t, sc)
	logDir := t.TempDir()
	dirs := map[string]string{"a": filepath.Join(t.TempDir(), "a"), "b": filepath.Join(t.TempDir(), "b")}
	launches := 0
	launch := func(id string, extra ...string) *proc {
		launches++
		args := append([]string{"run", "--brokers", strings.Join(c.brokers, ","), "--registry", c.registry, "--topic-prefix", c.prefix,
			"--state-dir", dirs[id], "--group", c.group, "--instance-id", id, "--http", "127.0.0.1:0",
			"--create-topics", "--partitions", fmt.Sprint(parts), "--fanout-chunk", "40", "--max-poll-records", "200",
			"--session-timeout", "60s"}, extra...)
		return startProc(t, id, args, logDir, launches)
	}
	a := launch("a")
	b := launch("b")
	t.Cleanup(func() {
		if t.Failed() {
			dumpTail(t, a.log, 30)
			dumpTail(t, b.log, 30)
		}
	})
	members := func() map[string][]int32 {
		t.Helper()
		return c.groupMembers(t)
	}
	// waitGroup waits (a liveness deadline, far under the session timeout
	// where it matters) until the group is as cond wants it.
	waitGroup := func(what string, cond func(map[string][]int32) bool, procs ...*proc) map[string][]int32 {
		t.Helper()
		deadline := time.Now().Add(45 * time.Second)
		for {
			m := members()
			if cond(m) {
				return m
			}
			for _, p := range procs {
				if err := p.exited(); err != nil {
					t.Fatalf("%s: %v", what, err)
				}
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: not within 45s; the group is %v", what, m)
			}
			time.Sleep(50 * time.Millisecond) // polling interval
		}
	}
	both := func(m map[string][]int32) bool {
		return len(m) == 2 && len(m["a"]) > 0 && len(m["b"]) > 0 && len(m["a"])+len(m["b"]) == parts
	}
	aAlone := func(m map[string][]int32) bool { return len(m) == 1 && len(m["a"]) == parts }
	before := waitGroup("a and b share the partitions", both, a, b)
	t.Logf("group: %v", before)

	// SIGTERM: a restart. b's member stays, with its partitions, and a's
	// are untouched: the group did not move anything.
	b.term(t)
	if got := members(); !slices.Equal(got["b"], before["b"]) || !slices.Equal(got["a"], before["a"]) || len(got) != 2 {
		t.Fatalf("after SIGTERM of b the group is %v, want it unchanged %v (a static member stays)", got, before)
	}
	if logHas(t, b.log, "left the group") {
		t.Errorf("b logged that it left the group on SIGTERM")
	}
	b = launch("b")
	restarted := waitGroup("b back with its partitions", func(m map[string][]int32) bool {
		return slices.Equal(m["b"], before["b"]) && slices.Equal(m["a"], before["a"]) && len(m) == 2 && logHas(t, b.log, "task restored")
	}, a, b)
	t.Logf("after the restart: %v", restarted)

	// SIGUSR1: scaling in. b has left once it has exited.
	if err := b.cmd.Process.Signal(syscall.SIGUSR1); err != nil {
		t.Fatal(err)
	}
	waitExit(t, b)
	if got := members(); got["b"] != nil || len(got) != 1 {
		t.Fatalf("after SIGUSR1 of b the group is %v, want a alone (b left)", got)
	}
	if !logHas(t, b.log, "left the group") {
		t.Errorf("b's log does not say it left the group")
	}
	waitGroup("a takes every partition", aAlone, a)

	// --leave-group-on-shutdown: SIGTERM leaves.
	b = launch("b", "--leave-group-on-shutdown")
	waitGroup("b joins again", both, a, b)
	b.term(t)
	if got := members(); got["b"] != nil || len(got) != 1 {
		t.Fatalf("after SIGTERM of b with --leave-group-on-shutdown the group is %v, want a alone", got)
	}
	waitGroup("a takes every partition", aAlone, a)

	// --dynamic: no instance id in the group; SIGTERM leaves.
	b = launch("b", "--dynamic")
	dyn := waitGroup("dynamic b joins", func(m map[string][]int32) bool {
		n := 0
		for id, ps := range m {
			if strings.HasPrefix(id, "dynamic/") {
				n += len(ps)
			}
		}
		return len(m) == 2 && n > 0 && len(m["a"])+n == parts
	}, a, b)
	t.Logf("with a dynamic b: %v", dyn)
	b.term(t)
	if got := members(); len(got) != 1 {
		t.Fatalf("after SIGTERM of a dynamic b the group is %v, want a alone", got)
	}
	waitGroup("a takes every partition", aAlone, a)

	c.waitSettled(t, campaignIDs(sc.Campaigns), 120*time.Second, a.exited)
	a.term(t)
	rep := c.checkInbox(t, sc, want)
	t.Logf("%d launches; inbox records %d, deliveries %d, expected %d, duplicates %d, missing %d",
		launches, rep.Records, rep.Deliveries, rep.Expected, len(rep.Duplicates), len(rep.Missing))
}

// waitExit waits for p to exit after a signal and checks it exited cleanly.
func waitExit(t *testing.T, p *proc) {
	t.Helper()
	select {
	case <-p.done:
	case <-time.After(30 * time.Second):
		p.kill(t)
		t.Fatalf("%s did not exit within 30s of its signal", p.name)
	}
	if p.err != nil {
		t.Fatalf("%s exited with %v, want a clean exit (log %s)", p.name, p.err, p.log)
	}
}

// logHas reports whether the log file at path has a line containing s.
func logHas(t *testing.T, path, s string) bool {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("read %s: %v", path, err)
	}
	return bytes.Contains(b, []byte(s))
}

// TestSessionTimeoutUnderBrokersMinimum: `sponsor run` with a session
// timeout the brokers refuse exits at once with an error that gives the
// minimum as the brokers' config has it, instead of retrying refused joins
// (INVALID_SESSION_TIMEOUT) for ever.
func TestSessionTimeoutUnderBrokersMinimum(t *testing.T) {
	c := newCluster(t, "tooshort", 2)
	p := startProc(t, "short", []string{"run", "--brokers", strings.Join(c.brokers, ","), "--registry", c.registry, "--topic-prefix", c.prefix,
		"--state-dir", t.TempDir(), "--group", c.group, "--http", "", "--session-timeout", "3s"}, t.TempDir(), 1)
	select {
	case <-p.done:
	case <-time.After(60 * time.Second): // liveness only
		t.Fatalf("sponsor run with --session-timeout 3s still running after 60s, want an exit")
	}
	if p.err == nil {
		t.Fatalf("sponsor run with --session-timeout 3s exited 0, want an error")
	}
	const want = "3s is under the minimum 6s, from the brokers' group.min.session.timeout.ms"
	if !logHas(t, p.log, want) || !logHas(t, p.log, "raise --session-timeout to at least 6s") {
		dumpTail(t, p.log, 10)
		t.Fatalf("its output does not say %q", want)
	}
}

// groupMembers maps each member of c's group to its assigned interactions
// partitions, sorted, by instance id ("dynamic/" and the member id for a
// dynamic member).
func (c *cluster) groupMembers(t testing.TB) map[string][]int32 {
	t.Helper()
	m, _ := c.describeGroup(t)
	return m
}

// describeGroup is groupMembers and the group's state ("Stable",
// "PreparingRebalance"...; "" for a group not created yet).
func (c *cluster) describeGroup(t testing.TB) (map[string][]int32, string) {
	t.Helper()
	gs, err := c.adm.DescribeGroups(testContext(t, 10*time.Second), c.group)
	if err == nil {
		err = gs.Error()
	}
	if errors.Is(err, kerr.GroupIDNotFound) {
		return map[string][]int32{}, "" // not created yet: no member
	}
	if err != nil {
		t.Fatalf("describe group %s: %v", c.group, err)
	}
	out := map[string][]int32{}
	for _, m := range gs[c.group].Members {
		id := "dynamic/" + m.MemberID
		if m.InstanceID != nil {
			id = *m.InstanceID
		}
		var ps []int32
		if ca, ok := m.Assigned.AsConsumer(); ok {
			for _, tp := range ca.Topics {
				if tp.Topic == c.names.Interactions {
					ps = append(ps, tp.Partitions...)
				}
			}
		}
		slices.Sort(ps)
		out[id] = ps
	}
	return out, gs[c.group].State
}
