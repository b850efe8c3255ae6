package pipeline

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
)

// TestHeartbeatInterval: the default heartbeat is at most a third of the
// session timeout (franz-go's own default, 3s, is more than a third of a
// 6s session), and a configured one over a third is refused by name.
func TestHeartbeatInterval(t *testing.T) {
	base := Config{Brokers: []string{"b:9092"}, Registry: "http://r", StateDir: "/s"}
	for _, tc := range []struct {
		session, heartbeat time.Duration
		want               time.Duration // after EnsureDefaults; 0: Validate refuses
	}{
		{session: 0, want: 3 * time.Second},               // the 10s default session
		{session: 6 * time.Second, want: 2 * time.Second}, // the brokers' minimum
		{session: 30 * time.Second, want: 3 * time.Second},
		{session: 6 * time.Second, heartbeat: 2 * time.Second, want: 2 * time.Second},
		{session: 6 * time.Second, heartbeat: 2*time.Second + time.Millisecond},
		{session: 10 * time.Second, heartbeat: 5 * time.Second},
		{session: 10 * time.Second, heartbeat: -time.Second},
	} {
		c := base
		c.SessionTimeout, c.HeartbeatInterval = tc.session, tc.heartbeat
		c.EnsureDefaults()
		err := c.Validate()
		switch {
		case tc.want == 0 && (err == nil || !strings.Contains(err.Error(), "HeartbeatInterval: must be positive and at most a third of SessionTimeout")):
			t.Errorf("session %s, heartbeat %s: Validate = %v, want the HeartbeatInterval error", tc.session, tc.heartbeat, err)
		case tc.want != 0 && (err != nil || c.HeartbeatInterval != tc.want):
			t.Errorf("session %s, heartbeat %s: heartbeat %s, Validate %v; want %s, nil", tc.session, tc.heartbeat, c.HeartbeatInterval, err, tc.want)
		}
	}
}

func kfakeAdmin(t *testing.T, opts ...kfake.Opt) (*kfake.Cluster, *kadm.Client) {
	t.Helper()
	kc, err := kfake.NewCluster(append([]kfake.Opt{kfake.NumBrokers(1)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(kc.Close)
	cl, err := kgo.NewClient(kgo.SeedBrokers(kc.ListenAddrs()...))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	return kc, kadm.NewClient(cl)
}

// TestSessionBounds: the bounds are the brokers' own when their config can
// be read, Kafka's default minimum otherwise, and a session timeout out of
// them gets an error that says the bound and where it comes from.
func TestSessionBounds(t *testing.T) {
	ctx := context.Background()
	_, adm := kfakeAdmin(t, kfake.BrokerConfigs(map[string]string{
		"group.min.session.timeout.ms": "8000", "group.max.session.timeout.ms": "20000"}))
	b := brokerSessionBounds(ctx, adm)
	if b.min != 8*time.Second || b.max != 20*time.Second || !strings.Contains(b.from, "the brokers'") {
		t.Fatalf("bounds of brokers with min 8000 and max 20000 ms: %+v, want 8s, 20s from the brokers", b)
	}
	for _, tc := range []struct {
		d    time.Duration
		want string // "": accepted
	}{
		{8 * time.Second, ""},
		{20 * time.Second, ""},
		{7 * time.Second, "SessionTimeout: session timeout outside the brokers' bounds: 7s is under the minimum 8s, from the brokers' group.min.session.timeout.ms and group.max.session.timeout.ms; raise --session-timeout to at least 8s"},
		{21 * time.Second, "21s is over the maximum 20s"},
	} {
		err := b.check(tc.d)
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("check(%s) = %v, want nil", tc.d, err)
		case tc.want != "" && (!errors.Is(err, ErrSessionTimeout) || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("check(%s) = %v, want ErrSessionTimeout saying %q", tc.d, err, tc.want)
		}
	}

	// Kafka's defaults, as kfake has them.
	_, adm = kfakeAdmin(t)
	if b := brokerSessionBounds(ctx, adm); b.min != 6*time.Second || b.max != 5*time.Minute {
		t.Errorf("bounds of default brokers: %+v, want 6s and 5m (kfake's group.max.session.timeout.ms)", b)
	}

	// Unreadable: Kafka's default minimum, and the reason.
	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	b = brokerSessionBounds(cancelled, adm)
	if b.min != DefaultMinSessionTimeout || b.max != 0 || !strings.Contains(b.from, "could not be read") {
		t.Errorf("bounds when the config cannot be read: %+v, want 6s, no maximum, and why", b)
	}
	if err := b.check(3 * time.Second); err == nil || !strings.Contains(err.Error(), "under the minimum 6s, from Kafka's default group.min.session.timeout.ms") {
		t.Errorf("check(3s) against the fallback = %v", err)
	}
}

// TestRunRefusesSessionTimeoutUnderMinimum: Run stops at once with the
// bound, instead of retrying joins the brokers refuse with
// INVALID_SESSION_TIMEOUT for ever (issue 15 saw 30 such lines and no
// clear error).
func TestRunRefusesSessionTimeoutUnderMinimum(t *testing.T) {
	kc, _ := kfakeAdmin(t)
	r, err := New(Config{Brokers: kc.ListenAddrs(), Registry: "http://127.0.0.1:1", StateDir: t.TempDir(),
		SessionTimeout: 3 * time.Second, CreateTopics: true, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute) // liveness only
	defer cancel()
	err = r.Run(ctx)
	if !errors.Is(err, ErrSessionTimeout) || !strings.Contains(err.Error(), "at least 6s") {
		t.Fatalf("Run with a 3s session timeout = %v, want ErrSessionTimeout saying the 6s minimum", err)
	}
}
