package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"io"
	"log"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/sponsored/sponsor/kafkaconn"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sr"
	"github.com/twmb/franz-go/pkg/sr/srfake"

	"github.com/sponsored/sponsor/schemas"
	"github.com/sponsored/sponsor/schemas/wire"
	"github.com/sponsored/sponsor/topics"
)

// Secrets of the secured stack; no tool may print them.
const (
	toolKafkaPass    = "tool-kafka-s3cret"
	toolRegistryPass = "tool-registry-s3cret"
)

// securityFlagNames are the security flags of `sponsor run`, which every
// tool takes too.
var securityFlagNames = []string{"sasl-mechanism", "sasl-user", "sasl-password", "sasl-password-file", "tls", "tls-ca-file",
	"tls-cert-file", "tls-key-file", "tls-server-name", "registry-user", "registry-password", "registry-password-file",
	"registry-token", "registry-token-file", "registry-ca-file"}

// secureStack is a kfake cluster with TLS and SASL/SCRAM-SHA-512 and a
// schema registry with basic auth over TLS, holding the pipeline's topics.
type secureStack struct {
	// conn are the connection flags without any security flag.
	conn []string
	// kafkaSec are the Kafka security flags (CA, SCRAM user and password
	// file), regSec the registry's (CA, user and password file).
	kafkaSec, regSec []string
	sec              kafkaconn.Security // the same, for the test's own clients
	brokers          []string
}

func (s *secureStack) all() []string {
	return append(append(append([]string(nil), s.conn...), s.kafkaSec...), s.regSec...)
}

func newSecureStack(t *testing.T) *secureStack {
	t.Helper()
	reg := srfake.NewRegistry(srfake.WithAuth("Basic " + base64.StdEncoding.EncodeToString([]byte("ops:"+toolRegistryPass))))
	srv := httptest.NewUnstartedServer(reg.Handler())
	srv.Config.ErrorLog = log.New(io.Discard, "", 0) // the handshakes failed on purpose
	srv.StartTLS()
	t.Cleanup(srv.Close)
	// httptest's self-signed certificate, for 127.0.0.1, serves both the
	// registry and the brokers: its PEM is the CA file of both.
	caFile := writeFile(t, "ca.pem", string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw})))
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.TLS(srv.TLS.Clone()),
		kfake.EnableSASL(), kfake.Superuser(kafkaconn.SASLScramSHA512, "ops", toolKafkaPass))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	kafkaPassFile := writeFile(t, "kafka-password", toolKafkaPass+"\n")
	regPassFile := writeFile(t, "registry-password", toolRegistryPass+"\n")
	s := &secureStack{
		brokers:  c.ListenAddrs(),
		conn:     []string{"--brokers", strings.Join(c.ListenAddrs(), ","), "--registry", srv.URL},
		kafkaSec: []string{"--tls-ca-file", caFile, "--sasl-mechanism", "SCRAM-SHA-512", "--sasl-user", "ops", "--sasl-password-file", kafkaPassFile},
		regSec:   []string{"--registry-ca-file", caFile, "--registry-user", "ops", "--registry-password-file", regPassFile},
		sec: kafkaconn.Security{TLSCAFile: caFile, SASLMechanism: kafkaconn.SASLScramSHA512, SASLUser: "ops", SASLPassword: toolKafkaPass,
			RegistryCAFile: caFile, RegistryUser: "ops", RegistryPassword: toolRegistryPass},
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cl := s.client(t)
	cat := topics.Catalog{Names: topics.NewNames("", "sponsor"), Partitions: 2, ReplicationFactor: -1}
	if _, err := cat.Ensure(ctx, kadm.NewClient(cl), true); err != nil {
		t.Fatalf("create topics: %v", err)
	}
	// And those of the shadow run s1, for diff.
	cat.Names = topics.Run{Group: "sponsor", Shadow: "s1"}.Names()
	if _, err := cat.Ensure(ctx, kadm.NewClient(cl), false); err != nil {
		t.Fatalf("create the shadow topics: %v", err)
	}
	return s
}

// client is a Kafka client of the test with the stack's credentials.
func (s *secureStack) client(t *testing.T) *kgo.Client {
	t.Helper()
	opts, err := s.sec.KafkaOpts()
	if err != nil {
		t.Fatal(err)
	}
	cl, err := kgo.NewClient(append(opts, kgo.SeedBrokers(s.brokers...))...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	return cl
}

// TestToolsSecure runs the tools against Kafka with TLS and SCRAM and a
// registry with basic auth over TLS: with the security flags of `sponsor
// run` (secrets from files) they work; without them, they fail saying why.
func TestToolsSecure(t *testing.T) {
	s := newSecureStack(t)
	campaign := `{"campaign_id":"c1","business_id":"b1","action":"LAUNCH","send_at":"2025-06-01T12:00:00Z","expires_at":"2025-06-02T12:00:00Z","message":{"text":"hi"}}`
	interaction := `{"event_id":"e1","user_id":"u1","business_id":"b1","kind":"USER_MESSAGE","occurred_at":"2025-06-01T11:00:00Z"}`

	// A decision about (c1, u1), as the pipeline would write it, for
	// report and explain (BLOCKED: no inbox record is expected).
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	ropts, err := s.sec.RegistryOpts()
	if err != nil {
		t.Fatal(err)
	}
	rc, err := sr.NewClient(append(ropts, sr.URLs(s.conn[3]))...)
	if err != nil {
		t.Fatal(err)
	}
	names := topics.NewNames("", "sponsor")
	serde, err := wire.New(ctx, rc, wire.Topics{Interactions: names.Interactions, Campaigns: names.Campaigns, Inbox: names.Inbox, Decisions: names.Decisions})
	if err != nil {
		t.Fatalf("register the schemas: %v", err)
	}
	dec, err := serde.AppendDecision(nil, &schemas.Decision{DeliveryID: "d1", UserID: "u1", BusinessID: "b1", CampaignID: "c1",
		Outcome: schemas.Blocked, DecidedAsOf: time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.client(t).ProduceSync(ctx, &kgo.Record{Topic: names.Decisions, Key: []byte("u1"), Value: dec}).FirstErr(); err != nil {
		t.Fatalf("write a decision: %v", err)
	}

	secure := s.all()
	for _, tc := range []struct {
		name  string
		cmd   func(context.Context, []string, stdio) error
		stdin string
		args  []string
		want  string // in stdout
	}{
		{"produce campaigns", cmdFunc("produce"), campaign + "\n", []string{"campaigns"}, "wrote 1 record to campaigns in one transaction"},
		{"produce interactions", cmdFunc("produce"), interaction + "\n", []string{"interactions"}, "wrote 1 record to interactions in one transaction"},
		{"gen", cmdFunc("gen"), "", []string{"--count", "20", "--users", "5", "--businesses", "2", "--campaign-every", "0"}, "wrote 20 interactions"},
		{"tail", cmdFunc("tail"), "", []string{"campaigns", "--values"}, `"campaign_id":"c1"`},
		{"report", cmdFunc("report"), "", []string{"--campaign", "c1"}, "campaign c1, business b1"},
		{"explain", cmdFunc("explain"), "", []string{"--campaign", "c1", "--user", "u1"}, "decision: BLOCKED"},
		// No run processed the interactions written above: the
		// comparison is partial (exit 3), and it read both inboxes.
		{"diff", cmdFunc("diff"), "", []string{"--shadow", "s1"}, "real inbox 0 records, shadow s1 inbox 0 records"},
		{"replay plan", cmdFunc("replay"), "", []string{"--to-start"}, "replay of group sponsor on interactions"},
		{"deadletter redrive plan", cmdFunc("deadletter"), "", []string{"redrive"}, "No dead letters in deadletter."},
		{"state rebuild", cmdFunc("state", "rebuild"), "", []string{"--state-dir", t.TempDir()}, "rebuilt 2 partitions of sponsor-state-changelog"},
		// --shadow names the shadow run's own topics, as sponsor run --shadow does.
		{"deadletter redrive plan of a shadow run", cmdFunc("deadletter"), "", []string{"redrive", "--shadow", "s1"}, "No dead letters in shadow-s1-deadletter."},
		{"state rebuild of a shadow run", cmdFunc("state", "rebuild"), "", []string{"--state-dir", t.TempDir(), "--shadow", "s1"}, "rebuilt 2 partitions of sponsor-shadow-s1-state-changelog"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			args := append(append([]string(nil), tc.args...), secure...)
			out, stderr, err := runCmd(t, tc.cmd, tc.stdin, args...)
			if ee, ok := errors.AsType[*exitError](err); ok && tc.name == "diff" && ee.code == 3 {
				err = nil
			}
			if err != nil || !strings.Contains(out, tc.want) {
				t.Fatalf("%s with the security flags: %v\nstdout: %s\nstderr: %s\nwant %q in stdout", tc.name, err, out, stderr, tc.want)
			}
			assertNoToolSecret(t, out+stderr)
		})
	}

	// The secrets and the rest from SPONSOR_* variables, as for run.
	t.Run("from the environment", func(t *testing.T) {
		for k, v := range map[string]string{
			"SPONSOR_TLS_CA_FILE": s.kafkaSec[1], "SPONSOR_SASL_MECHANISM": "scram-sha-512", "SPONSOR_SASL_USER": "ops", "SPONSOR_SASL_PASSWORD": toolKafkaPass,
			"SPONSOR_REGISTRY_CA_FILE": s.regSec[1], "SPONSOR_REGISTRY_USER": "ops", "SPONSOR_REGISTRY_PASSWORD": toolRegistryPass,
		} {
			t.Setenv(k, v)
		}
		out, stderr, err := runCmd(t, cmdFunc("tail"), "", append([]string{"interactions", "-n", "1"}, s.conn...)...)
		if err != nil || !strings.Contains(out, `"topic":"interactions"`) {
			t.Fatalf("tail with the security settings in the environment: %v\nstdout: %s\nstderr: %s", err, out, stderr)
		}
		assertNoToolSecret(t, out+stderr)
	})

	// Without credentials every tool fails, saying why, and soon.
	for _, tc := range []struct {
		name string
		cmd  func(context.Context, []string, stdio) error
		args []string
		want []string // one of them in the error; nil: any error
	}{
		{"produce without SASL", cmdFunc("produce"), append(append(s.conn, s.regSec...), "campaigns", "--tls-ca-file", s.kafkaSec[1]), []string{"SASL"}},
		{"produce without TLS", cmdFunc("produce"), append(append(s.conn, s.regSec...), "campaigns"), []string{"TLS"}},
		{"produce without registry password", cmdFunc("produce"), append(append(s.conn, s.kafkaSec...), "campaigns", "--registry-ca-file", s.regSec[1]), []string{"401 Unauthorized: give its credentials with --registry-user"}},
		{"gen with the wrong registry password", cmdFunc("gen"), append(append(s.conn, s.kafkaSec...), "--count", "1", "--registry-ca-file", s.regSec[1],
			"--registry-user", "ops", "--registry-password", "wrong"), []string{"401 Unauthorized", "403 Forbidden: check --registry-user"}},
		{"produce without registry CA", cmdFunc("produce"), append(append(s.conn, s.kafkaSec...), "campaigns", "--registry-user", "ops", "--registry-password", toolRegistryPass), []string{"certificate"}},
		{"tail without SASL", cmdFunc("tail"), append(append(s.conn, s.regSec...), "campaigns", "--tls-ca-file", s.kafkaSec[1]), []string{"SASL"}},
		{"explain without registry auth", cmdFunc("explain"), append(append(s.conn, s.kafkaSec...), "--campaign", "c1", "--user", "u1", "--registry-ca-file", s.regSec[1]), []string{"401 Unauthorized"}},
		{"report without SASL", cmdFunc("report"), append(append(s.conn, s.regSec...), "--campaign", "c1", "--tls-ca-file", s.kafkaSec[1]), []string{"SASL"}},
		{"replay without SASL", cmdFunc("replay"), append(append([]string(nil), s.conn...), "--to-start", "--tls-ca-file", s.kafkaSec[1]), []string{"SASL"}},
		// kfake closes the connection on a wrong password (EOF); a broker
		// answers SASL_AUTHENTICATION_FAILED, which securityHint explains.
		{"replay with the wrong password", cmdFunc("replay"), append(append([]string(nil), s.conn...), "--to-start", "--tls-ca-file", s.kafkaSec[1],
			"--sasl-mechanism", "SCRAM-SHA-512", "--sasl-user", "ops", "--sasl-password", "wrong"), nil},
		{"deadletter redrive without TLS", cmdFunc("deadletter"), append([]string{"redrive"}, s.conn...), []string{"is TLS missing?"}},
		{"state rebuild without SASL", cmdFunc("state", "rebuild"), append(append([]string(nil), s.conn...), "--state-dir", t.TempDir(), "--tls-ca-file", s.kafkaSec[1]), []string{"is SASL missing?"}},
		{"replay, SASL without a password", cmdFunc("replay"), append(append([]string(nil), s.conn...), "--to-start", "--sasl-mechanism", "SCRAM-SHA-512", "--sasl-user", "ops"),
			[]string{"--sasl-password or --sasl-password-file"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			began := time.Now()
			out, stderr, err := runCmd(t, tc.cmd, campaign+"\n", tc.args...)
			if err == nil {
				t.Fatalf("%s: no error\nstdout: %s\nstderr: %s", tc.name, out, stderr)
			}
			t.Logf("%s after %s: %v", tc.name, time.Since(began).Round(time.Millisecond), err)
			found := tc.want == nil
			for _, w := range tc.want {
				found = found || strings.Contains(err.Error(), w)
			}
			if !found {
				t.Errorf("%s: error %q, want it to say one of %q", tc.name, err, tc.want)
			}
			assertNoToolSecret(t, err.Error()+out+stderr)
		})
	}
}

func assertNoToolSecret(t *testing.T, s string) {
	t.Helper()
	for _, secret := range []string{toolKafkaPass, toolRegistryPass} {
		if strings.Contains(s, secret) {
			t.Errorf("output holds a secret: %s", s)
		}
	}
}

// TestToolsHelpListSecurityFlags checks that the --help of every tool
// lists the security flags of `sponsor run` (schemas check: the
// registry's).
func TestToolsHelpListSecurityFlags(t *testing.T) {
	for _, tc := range []struct {
		name string
		cmd  func(context.Context, []string, stdio) error
		args []string
	}{
		{"produce", cmdFunc("produce"), nil},
		{"gen", cmdFunc("gen"), nil},
		{"tail", cmdFunc("tail"), nil},
		{"report", cmdFunc("report"), nil},
		{"explain", cmdFunc("explain"), nil},
		{"replay", cmdFunc("replay"), nil},
		{"diff", cmdFunc("diff"), nil},
		{"deadletter redrive", cmdFunc("deadletter"), []string{"redrive"}},
		{"state rebuild", cmdFunc("state"), []string{"rebuild"}},
		{"txn list", cmdFunc("txn"), []string{"list"}},
		{"txn abort", cmdFunc("txn"), []string{"abort"}},
		{"schemas check", cmdFunc("schemas"), []string{"check"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var out, errb bytes.Buffer
			err := tc.cmd(context.Background(), append(tc.args, "--help"), stdio{in: strings.NewReader(""), out: &out, err: &errb})
			if err == nil {
				t.Fatalf("--help: no error (want flag.ErrHelp)")
			}
			help := errb.String()
			for _, name := range securityFlagNames {
				if tc.name == "schemas check" && !strings.HasPrefix(name, "registry-") {
					if strings.Contains(help, "  -"+name+" ") || strings.Contains(help, "  -"+name+"\n") {
						t.Errorf("--help of %s lists the Kafka flag -%s", tc.name, name)
					}
					continue
				}
				if !strings.Contains(help, "  -"+name+" ") && !strings.Contains(help, "  -"+name+"\n") {
					t.Errorf("--help of %s does not list -%s:\n%s", tc.name, name, help)
				}
			}
		})
	}
}
