package e2e

import (
	"context"
	"errors"
	"runtime/pprof"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sponsored/sponsor/pipeline"
)

// runner is a pipeline running in the test process.
type runner struct {
	r      *pipeline.Runner
	cancel context.CancelFunc
	done   chan struct{}
	err    error
}

// startRunner runs the pipeline of c's group with stateDir; mod adjusts
// the config. The runner is stopped at cleanup if the test did not.
func startRunner(t testing.TB, c *cluster, stateDir string, mod func(*pipeline.Config)) *runner {
	t.Helper()
	return startRunnerMetrics(t, c, stateDir, mod, nil)
}

// startRunnerMetrics is startRunner exporting the runner's metrics on reg
// (Runner.Register), when reg is not nil.
func startRunnerMetrics(t testing.TB, c *cluster, stateDir string, mod func(*pipeline.Config), reg prometheus.Registerer) *runner {
	t.Helper()
	log, _ := fileLogger(t, "runner.log")
	cfg := pipeline.Config{
		Brokers:      c.brokers,
		Registry:     c.registry,
		TopicPrefix:  c.prefix,
		StateDir:     stateDir,
		Group:        c.group,
		CreateTopics: true,
		Partitions:   c.parts,
		Logger:       log,
		// A test's stop hands the partitions over at once (as SIGUSR1
		// does), so that a runner started next with another state
		// folder, or a replay that needs an empty group, does not wait
		// out the session timeout of a static member that stays.
		// TestStaticMembership covers the stop that stays.
		LeaveGroupOnShutdown: true,
		Compression:          *benchCompression,
	}
	if mod != nil {
		mod(&cfg)
	}
	r, err := pipeline.New(cfg)
	if err != nil {
		t.Fatalf("pipeline.New: %v", err)
	}
	if reg != nil {
		if err := r.Register(reg); err != nil {
			t.Fatalf("register metrics: %v", err)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	h := &runner{r: r, cancel: cancel, done: make(chan struct{})}
	// The pipeline's goroutines (its clients' included) carry the label
	// bench=pipeline in CPU profiles: go tool pprof -tagfocus bench=pipeline.
	pprof.Do(context.Background(), pprof.Labels("bench", "pipeline"), func(context.Context) {
		go func() {
			defer close(h.done)
			h.err = r.Run(ctx)
		}()
	})
	t.Cleanup(func() { h.stop(t) })
	return h
}

// alive reports the runner's error if it has stopped.
func (h *runner) alive() error {
	select {
	case <-h.done:
		if h.err == nil {
			return errors.New("Run returned nil")
		}
		return h.err
	default:
		return nil
	}
}

// stop cancels the runner and waits for Run to return; Run must return nil.
func (h *runner) stop(t testing.TB) {
	t.Helper()
	h.cancel()
	select {
	case <-h.done:
	case <-time.After(30 * time.Second):
		t.Fatalf("runner did not stop within 30s of its context ending")
	}
	if h.err != nil {
		t.Errorf("Run returned %v, want nil after a clean stop", h.err)
		h.err = nil
	}
}
