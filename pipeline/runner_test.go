package pipeline

import (
	"context"
	"log/slog"
	"testing"
)

// TestRunStoppedDuringStartUp: a shutdown asked for while the runner is
// still starting (here before it even reached the brokers) is a clean stop:
// Run returns nil, so `sponsor run` exits 0 on a SIGTERM during start-up
// (TestGroupOfThreeRandomKills once SIGTERMed an instance while it was
// registering its schemas, and it exited 1).
func TestRunStoppedDuringStartUp(t *testing.T) {
	r, err := New(Config{Brokers: []string{"127.0.0.1:1"}, Registry: "http://127.0.0.1:1", StateDir: t.TempDir(),
		Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := r.Run(ctx); err != nil {
		t.Fatalf("Run with a shutdown asked for during start-up = %v, want nil (a clean stop)", err)
	}
}
