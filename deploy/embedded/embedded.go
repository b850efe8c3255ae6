// Package embedded runs the embedded default: an in-process Kafka (franz-go's
// kfake) and schema registry (srfake) on fixed local ports, so that the
// pipeline, the demo and outside tools (kcat, any Kafka client) can use them
// without installing anything. It is for development, demos and tests, not
// for production.
//
// Classic consumer groups of dynamic members can stall on kfake (the
// version go.mod pins, pkg/kfake/groups.go): a member whose connection dies
// while its JoinGroup is parked gets no session timer again (group.reply
// arms it only when the reply was delivered, lines 1709-1713), so only the
// pending-sync timer, the largest rebalance timeout (60 s here), removes
// it (line 1442); a member waiting in JoinGroup or SyncGroup is expired by
// its session timer as if dead (updateHeartbeat, line 1514, removes it)
// and its parked request is never answered (Kafka answers
// UNKNOWN_MEMBER_ID), so franz-go waits out its request timeout,
// rebalance timeout + 10 s; and removeMember decrements the join counter
// for a member parked in SyncGroup after completeRebalance reset it to 0
// (lines 1366, 1574), so it can go negative. The pipeline joins as a
// static member by default, which a restart replaces at once whatever
// state the dead member was left in (replaceStaticMember), so `sponsor
// dev` and the tests do not meet this; `--dynamic` on kfake can.
package embedded

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/sr"
	"github.com/twmb/franz-go/pkg/sr/srfake"
)

// Options configures a Stack.
type Options struct {
	// Dir keeps the broker's log and the registry's schemas across restarts.
	// Empty: everything is in memory and gone on Close.
	Dir string
	// KafkaPort is the broker's port on 127.0.0.1. 0: a free port.
	KafkaPort int
	// RegistryPort is the schema registry's port on 127.0.0.1. 0: a free port.
	RegistryPort int
	// KfakeOpts are extra options for the broker (fault injection in tests).
	KfakeOpts []kfake.Opt
}

// Stack is a running embedded Kafka and schema registry.
type Stack struct {
	// Cluster is the in-process broker.
	Cluster *kfake.Cluster
	// Registry is the in-process schema registry.
	Registry *srfake.Registry
	// Brokers are the broker addresses to give clients.
	Brokers []string
	// RegistryURL is the registry's base URL.
	RegistryURL string

	srv       *http.Server
	schemasAt string
	closeOnce sync.Once
}

// Start starts the broker and the registry.
func Start(opts Options) (*Stack, error) {
	kopts := []kfake.Opt{kfake.NumBrokers(1), kfake.Ports(opts.KafkaPort)}
	if opts.Dir != "" {
		if err := os.MkdirAll(opts.Dir, 0o755); err != nil {
			return nil, fmt.Errorf("embedded: create %s: %w", opts.Dir, err)
		}
		kopts = append(kopts, kfake.DataDir(filepath.Join(opts.Dir, "kafka")))
	}
	kopts = append(kopts, opts.KfakeOpts...)
	cluster, err := kfake.NewCluster(kopts...)
	if err != nil {
		return nil, fmt.Errorf("embedded: start kafka on port %d: %w (is another `sponsor dev` running?)", opts.KafkaPort, err)
	}
	reg := srfake.NewRegistry()
	s := &Stack{Cluster: cluster, Registry: reg, Brokers: cluster.ListenAddrs()}
	if opts.Dir != "" {
		s.schemasAt = filepath.Join(opts.Dir, "schemas.json")
		if err := s.loadSchemas(); err != nil {
			cluster.Close()
			return nil, err
		}
	}
	ln, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", opts.RegistryPort))
	if err != nil {
		cluster.Close()
		return nil, fmt.Errorf("embedded: start schema registry on port %d: %w", opts.RegistryPort, err)
	}
	s.RegistryURL = "http://" + ln.Addr().String()
	s.srv = &http.Server{Handler: reg.Handler(), ReadHeaderTimeout: 10 * time.Second}
	go s.srv.Serve(ln)
	return s, nil
}

// savedSchema is one registered schema as kept in Dir/schemas.json.
type savedSchema struct {
	Subject string    `json:"subject"`
	Version int       `json:"version"`
	ID      int       `json:"id"`
	Schema  sr.Schema `json:"schema"`
}

func (s *Stack) loadSchemas() error {
	b, err := os.ReadFile(s.schemasAt)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("embedded: read saved schemas: %w", err)
	}
	var saved []savedSchema
	if err := json.Unmarshal(b, &saved); err != nil {
		return fmt.Errorf("embedded: %s: %w", s.schemasAt, err)
	}
	if err := restoreSchemas(s.Registry, saved); err != nil {
		return fmt.Errorf("embedded: %s: %w", s.schemasAt, err)
	}
	return nil
}

// restoreSchemas puts every saved subject version back into reg under the id
// it had. One id may stand under several subjects (a shadow run's subjects
// carry the same schemas as the real ones, and a registry gives equal
// schemas one id): the first version with an id is seeded at its id, and
// the others are registered again, which gives them that same id; versions
// are restored in order so each gets its own number back.
func restoreSchemas(reg *srfake.Registry, saved []savedSchema) error {
	saved = slices.Clone(saved)
	slices.SortStableFunc(saved, func(a, b savedSchema) int {
		return cmp.Or(strings.Compare(a.Subject, b.Subject), cmp.Compare(a.Version, b.Version))
	})
	byID := map[int]sr.Schema{}
	for i, sc := range saved {
		if i > 0 && saved[i-1].Subject == sc.Subject && saved[i-1].Version == sc.Version {
			return fmt.Errorf("subject %q version %d is saved twice", sc.Subject, sc.Version)
		}
		if prev, ok := byID[sc.ID]; ok && prev.Schema != sc.Schema.Schema {
			return fmt.Errorf("schema id %d is saved with two different schemas (subject %q version %d)", sc.ID, sc.Subject, sc.Version)
		}
		byID[sc.ID] = sc.Schema
	}
	seeded := map[int]bool{}
	for _, sc := range saved {
		if !seeded[sc.ID] {
			if err := seed(reg, sc); err != nil {
				return err
			}
			seeded[sc.ID] = true
			continue
		}
		id, version, err := reg.RegisterSchema(sc.Subject, sc.Schema)
		if err != nil {
			return fmt.Errorf("restore subject %q version %d (id %d): %w", sc.Subject, sc.Version, sc.ID, err)
		}
		if id != sc.ID || version != sc.Version {
			return fmt.Errorf("restore subject %q version %d (id %d): the registry gave it version %d, id %d", sc.Subject, sc.Version, sc.ID, version, id)
		}
	}
	return nil
}

// seed is SeedSchema, which panics on what it refuses (an invalid schema, a
// taken id or version), returning that refusal as an error instead.
func seed(reg *srfake.Registry, sc savedSchema) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("restore subject %q version %d (id %d): %v", sc.Subject, sc.Version, sc.ID, p)
		}
	}()
	reg.SeedSchema(sc.Subject, sc.Version, sc.ID, sc.Schema)
	return nil
}

// SaveSchemas writes every registered schema to Dir, so that records already
// in the broker's log still decode after a restart. Close calls it.
func (s *Stack) SaveSchemas(ctx context.Context) error {
	if s.schemasAt == "" {
		return nil
	}
	rc, err := sr.NewClient(sr.URLs(s.RegistryURL))
	if err != nil {
		return err
	}
	subjects, err := rc.Subjects(ctx)
	if err != nil {
		return fmt.Errorf("embedded: list subjects: %w", err)
	}
	var saved []savedSchema
	for _, sub := range subjects {
		versions, err := rc.SubjectVersions(ctx, sub)
		if err != nil {
			return fmt.Errorf("embedded: versions of %s: %w", sub, err)
		}
		for _, v := range versions {
			ss, err := rc.SchemaByVersion(ctx, sub, v)
			if err != nil {
				return fmt.Errorf("embedded: %s version %d: %w", sub, v, err)
			}
			saved = append(saved, savedSchema{Subject: sub, Version: v, ID: ss.ID, Schema: ss.Schema})
		}
	}
	b, err := json.MarshalIndent(saved, "", "  ")
	if err != nil {
		return err
	}
	tmp := s.schemasAt + ".tmp"
	if err := os.WriteFile(tmp, b, 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, s.schemasAt)
}

// Close saves the schemas and stops the registry and the broker.
func (s *Stack) Close() error {
	var err error
	s.closeOnce.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		err = s.SaveSchemas(ctx)
		s.srv.Close()
		s.Cluster.Close()
	})
	return err
}
