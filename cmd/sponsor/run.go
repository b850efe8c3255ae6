package main

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/sponsored/sponsor/pipeline"
)

const runUsage = `Usage: sponsor run --brokers HOST:PORT[,...] --registry URL --state-dir DIR [flags]

Runs the pipeline against an existing Kafka cluster, as a static group
member: SIGTERM stops it for a restart (it stays in the group, a quick
restart does not rebalance); SIGUSR1 stops it and leaves the group (scaling
in: the others take its partitions at once).

Flags (also SPONSOR_<NAME> in the environment):
`

// parseRunFlags registers the flags of `sponsor run` on fs and parses it:
// run and config print share it, so both see exactly the same
// configuration.
func parseRunFlags(fs *flagSet) (*pipelineFlags, error) {
	f := &pipelineFlags{}
	registerBrokers(fs.FlagSet, &f.brokers)
	registerRegistry(fs.FlagSet, &f.cfg.Registry, "schema registry URL (required)")
	registerStateDir(fs.FlagSet, &f.cfg.StateDir, "folder of the local state (required)")
	fs.BoolVar(&f.cfg.CreateTopics, "create-topics", false, "also create the input topics if missing (development)")
	var parts int
	fs.IntVar(&parts, "partitions", 6, "partitions of the topics --create-topics creates")
	f.register(fs.FlagSet, "127.0.0.1:8080")
	if _, err := fs.parse(); err != nil {
		return f, err
	}
	f.cfg.Partitions = int32(parts)
	return f, nil
}

func cmdRun(ctx context.Context, fs *flagSet, _ stdio) error {
	f, err := parseRunFlags(fs)
	if err != nil {
		return err
	}
	log, err := f.finish()
	if err != nil {
		return err
	}
	r, err := pipeline.New(f.cfg)
	if err != nil {
		return flagNames(fs.FlagSet, &f.cfg, err)
	}
	return runWithHTTP(ctx, r, f.httpAddr, log)
}

// runWithHTTP runs r and serves its endpoints on addr. SIGTERM and SIGINT
// (main's ctx) stop r; SIGUSR1 stops it and leaves the group (see
// leaveOnSIGUSR1).
func runWithHTTP(ctx context.Context, r *pipeline.Runner, addr string, log *slog.Logger) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stopLeaving := leaveOnSIGUSR1(r, cancel, log)
	defer stopLeaving()
	if addr != "" {
		reg := prometheus.NewRegistry()
		reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
		if err := r.Register(reg); err != nil {
			return err
		}
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			return fmt.Errorf("--http %s: %w", addr, err)
		}
		srv := &http.Server{Handler: r.Handler(reg), ReadHeaderTimeout: 10 * time.Second}
		go srv.Serve(ln)
		defer srv.Close()
		log.Info("serving "+httpEndpoints, "addr", "http://"+ln.Addr().String())
	}
	return r.Run(ctx)
}

// leaveOnSIGUSR1 makes SIGUSR1 a shutdown that leaves the group: r leaves
// with its instance id once stopped, so the other instances take its
// partitions at once (scaling in), where SIGTERM keeps them for the
// session timeout (a rolling restart: the instance comes back to them
// without a rebalance). It returns the function that stops listening.
func leaveOnSIGUSR1(r *pipeline.Runner, stop context.CancelFunc, log *slog.Logger) func() {
	ch := make(chan os.Signal, 1)
	signal.Notify(ch, syscall.SIGUSR1)
	done := make(chan struct{})
	go func() {
		select {
		case <-ch:
			log.Info("SIGUSR1: stopping and leaving the group, so the other instances take the partitions now")
			r.LeaveGroupOnShutdown()
			stop()
		case <-done:
		}
	}()
	return func() { signal.Stop(ch); close(done) }
}
