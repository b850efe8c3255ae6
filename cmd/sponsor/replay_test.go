package main

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
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

	out, _, err := runCmd(t, cmdReplay, "", append([]string{"--to-start"}, conn...)...)
	if err != nil || !strings.Contains(out, "1 member(s) running") || !strings.Contains(out, "Nothing changed: --yes is refused") {
		t.Errorf("replay plan with an instance running: %v\n%s\nwant exit 0, the members and that --yes is refused", err, out)
	}
	_, _, err = runCmd(t, cmdReplay, "", append([]string{"--to-start", "--yes"}, conn...)...)
	if err == nil || !strings.HasPrefix(err.Error(), "instances of the group are running") {
		t.Errorf("replay --yes with an instance running: %v, want an error starting 'instances of the group are running'", err)
	}
}
