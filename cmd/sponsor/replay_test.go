package main

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sponsored/sponsor/topics"
)

// TestReplayPlanWhileRunning: the plan asked for while an instance of the
// group runs is printed and exits 0 (it is what was asked for); --yes is
// refused with an error that does not repeat the command's name (main
// prints "sponsor replay: " before it; it used to read "sponsor replay:
// replay: ...").
func TestReplayPlanWhileRunning(t *testing.T) {
	stack, conn := toolStack(t, "")
	member, err := kgo.NewClient(kgo.SeedBrokers(stack.Brokers...), kgo.ConsumerGroup("sponsor"), kgo.ConsumeTopics("interactions"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(member.Close)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	go func() {
		for ctx.Err() == nil {
			member.PollFetches(ctx)
		}
	}()
	adm := kadm.NewClient(member)
	for {
		gs, err := adm.DescribeGroups(ctx, "sponsor")
		if err == nil && len(gs["sponsor"].Members) > 0 {
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("the group member never joined: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}

	out, _, err := runCmd(t, cmdFunc("replay"), "", append([]string{"--to-start"}, conn...)...)
	if err != nil || !strings.Contains(out, "1 member(s) running") || !strings.Contains(out, "Nothing changed: --yes is refused") {
		t.Errorf("replay plan with an instance running: %v\n%s\nwant exit 0, the members and that --yes is refused", err, out)
	}
	_, _, err = runCmd(t, cmdFunc("replay"), "", append([]string{"--to-start", "--yes"}, conn...)...)
	if err == nil || !strings.HasPrefix(err.Error(), "instances of the group are running") {
		t.Errorf("replay --yes with an instance running: %v, want an error starting 'instances of the group are running'", err)
	}
}

// TestDiffPartialWhileBehind: diff first shows each run's lag on
// interactions; while a run has not processed everything the comparison is
// marked PARTIAL and exits 3, and once both have caught up it compares as
// usual (here: two empty inboxes agree).
func TestDiffPartialWhileBehind(t *testing.T) {
	stack, conn := toolStack(t, "")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cl, err := kgo.NewClient(kgo.SeedBrokers(stack.Brokers...))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	adm := kadm.NewClient(cl)
	shadow := topics.Catalog{Names: topics.Run{Group: "sponsor", Shadow: "x"}.Names(), Partitions: 2, ReplicationFactor: -1}
	if _, err := shadow.Ensure(ctx, adm, true); err != nil {
		t.Fatalf("create the shadow's topics: %v", err)
	}
	in := `{"event_id":"e1","user_id":"u1","business_id":"b1","kind":"USER_MESSAGE","occurred_at":"2025-06-01T12:00:00Z"}
{"event_id":"e2","user_id":"u2","business_id":"b1","kind":"USER_MESSAGE","occurred_at":"2025-06-01T12:00:00Z"}
`
	if _, stderr, err := runCmd(t, cmdFunc("produce"), in, append([]string{"interactions"}, conn...)...); err != nil {
		t.Fatalf("produce: %v %s", err, stderr)
	}
	diff := append([]string{"--shadow", "x"}, conn...)
	out, _, err := runCmd(t, cmdFunc("diff"), "", diff...)
	if ee, ok := errors.AsType[*exitError](err); !ok || ee.code != 3 || !strings.Contains(out, "group sponsor-shadow-x has not caught up: 3 offsets of interactions not processed yet (partition:lag 0:3)") || !strings.Contains(out, "PARTIAL") {
		t.Errorf("diff while both runs are behind: %v\n%s\nwant exit 3, each group's lag and PARTIAL", err, out)
	}

	// Both groups processed everything.
	ends, err := adm.ListEndOffsets(ctx, "interactions")
	if err != nil {
		t.Fatal(err)
	}
	for _, g := range []string{"sponsor", "sponsor-shadow-x"} {
		if err := adm.CommitAllOffsets(ctx, g, ends.Offsets()); err != nil {
			t.Fatalf("commit offsets of %s: %v", g, err)
		}
	}
	out, _, err = runCmd(t, cmdFunc("diff"), "", diff...)
	if err != nil || strings.Contains(out, "PARTIAL") || !strings.Contains(out, "the runs agree") {
		t.Errorf("diff once both runs caught up: %v\n%s\nwant the runs agree, not partial", err, out)
	}
}
