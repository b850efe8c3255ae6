package e2e

import (
	"bytes"
	"log/slog"
	"regexp"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/sponsored/sponsor/pipeline"
)

// TestCampaignFiredOncePerInstance: an instance that owns several
// partitions logs one "campaign fired" line per campaign, with its
// partitions and totals, and counts the campaign once (Stats.Campaigns, the
// live line of sponsor dev), while sponsor_campaigns_fired_total still
// counts one fan-out per partition. It used to log and count a campaign
// once per partition (85 campaigns showed as 510 on six partitions).
func TestCampaignFiredOncePerInstance(t *testing.T) {
	sc := newScenario(smallScenario)
	want, _ := expectedDeliveries(sc.Interactions, sc.Campaigns, defaultOracle)
	c := newCluster(t, "fired-once", 4)
	c.produceScenario(t, sc)
	var logs lockedBuffer
	h := startRunner(t, c, t.TempDir(), func(cfg *pipeline.Config) {
		cfg.Logger = slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelInfo}))
	})
	c.waitSettled(t, campaignIDs(sc.Campaigns), 90*time.Second, h.alive)
	c.checkInbox(t, sc, want)
	st := h.r.Stats()
	// The counters move after the commit that logs: wait for the last line.
	deadline := time.Now().Add(10 * time.Second)
	line := regexp.MustCompile(`msg="campaign fired" [^\n]*?campaign=(\S+) partitions="?\[([0-9 ]*)\]"? decided=(\d+) delivered=(\d+)`)
	var lines [][]string
	for {
		lines = line.FindAllStringSubmatch(logs.String(), -1)
		if int64(len(lines)) == st.Campaigns.Load() && len(lines) > 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	seen := map[string]int{}
	var delivered int64
	multi := 0
	for _, m := range lines {
		seen[m[1]]++
		n, _ := strconv.ParseInt(m[4], 10, 64)
		delivered += n
		if len(regexp.MustCompile(`\d+`).FindAllString(m[2], -1)) > 1 {
			multi++
		}
	}
	for id, n := range seen {
		if n != 1 {
			t.Errorf("campaign %s: %d 'campaign fired' lines, want 1", id, n)
		}
	}
	if got := st.Campaigns.Load(); got != int64(len(seen)) || got == 0 {
		t.Errorf("Stats().Campaigns = %d, want the %d campaigns logged (and some)", got, len(seen))
	}
	if multi == 0 || st.CampaignsFired.Load() <= st.Campaigns.Load() {
		t.Errorf("no campaign fired on several partitions (%d fan-outs, %d campaigns): the test proves nothing", st.CampaignsFired.Load(), st.Campaigns.Load())
	}
	if delivered != st.Delivered() {
		t.Errorf("the 'campaign fired' lines sum to %d deliveries, the instance delivered %d", delivered, st.Delivered())
	}
	if len(lines) == 0 {
		t.Logf("log:\n%.3000s", logs.String())
	}
	t.Logf("%d campaigns (%d on several partitions), %d fan-outs, %d deliveries", len(seen), multi, st.CampaignsFired.Load(), delivered)
}

// lockedBuffer is a bytes.Buffer for a logger and a reader.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}
