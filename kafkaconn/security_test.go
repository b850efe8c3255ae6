package kafkaconn_test

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sr"
	"github.com/twmb/franz-go/pkg/sr/srfake"

	"github.com/sponsored/sponsor/kafkaconn"
	"github.com/sponsored/sponsor/pipeline"
)

// Secrets used by the tests; none of them may ever appear in printed or
// logged output.
const (
	kafkaPass    = "kafka-s3cret-pw"
	registryPass = "registry-s3cret-pw"
	registryTok  = "registry-s3cret-token"
)

func TestSecurityValidate(t *testing.T) {
	for _, tc := range []struct {
		name string
		s    kafkaconn.Security
		want string // substring of the error; empty: valid
	}{
		{"zero", kafkaconn.Security{}, ""},
		{"scram", kafkaconn.Security{SASLMechanism: "scram-sha-512", SASLUser: "u", SASLPassword: kafkaPass}, ""},
		{"plain from file", kafkaconn.Security{SASLMechanism: "PLAIN", SASLUser: "u", SASLPasswordFile: "/run/pw"}, ""},
		{"tls files", kafkaconn.Security{TLSCAFile: "ca", TLSCertFile: "c", TLSKeyFile: "k"}, ""},
		{"registry basic", kafkaconn.Security{RegistryUser: "u", RegistryPasswordFile: "f"}, ""},
		{"registry token", kafkaconn.Security{RegistryToken: registryTok}, ""},
		{"unknown mechanism", kafkaconn.Security{SASLMechanism: "GSSAPI", SASLUser: "u", SASLPassword: kafkaPass}, "Security.SASLMechanism"},
		{"user without mechanism", kafkaconn.Security{SASLUser: "u"}, "without Security.SASLMechanism"},
		{"password without mechanism", kafkaconn.Security{SASLPassword: kafkaPass}, "without Security.SASLMechanism"},
		{"mechanism without user", kafkaconn.Security{SASLMechanism: "PLAIN", SASLPassword: kafkaPass}, "Security.SASLUser"},
		{"mechanism without password", kafkaconn.Security{SASLMechanism: "PLAIN", SASLUser: "u"}, "Security.SASLPassword"},
		{"password twice", kafkaconn.Security{SASLMechanism: "PLAIN", SASLUser: "u", SASLPassword: kafkaPass, SASLPasswordFile: "f"}, "SASLPasswordFile: give one"},
		{"cert without key", kafkaconn.Security{TLSCertFile: "c"}, "Security.TLSCertFile, TLSKeyFile"},
		{"key without cert", kafkaconn.Security{TLSKeyFile: "k"}, "Security.TLSCertFile, TLSKeyFile"},
		{"registry user without password", kafkaconn.Security{RegistryUser: "u"}, "Security.RegistryPassword"},
		{"registry password without user", kafkaconn.Security{RegistryPassword: registryPass}, "Security.RegistryUser"},
		{"registry password twice", kafkaconn.Security{RegistryUser: "u", RegistryPassword: registryPass, RegistryPasswordFile: "f"}, "RegistryPasswordFile: give one"},
		{"registry token twice", kafkaconn.Security{RegistryToken: registryTok, RegistryTokenFile: "f"}, "RegistryTokenFile: give one"},
		{"basic and bearer", kafkaconn.Security{RegistryUser: "u", RegistryPassword: registryPass, RegistryToken: registryTok}, "exclusive"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.s.Validate()
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("Validate: %v, want nil", err)
			case tc.want != "" && err == nil:
				t.Fatalf("Validate: nil, want an error naming %q", tc.want)
			case tc.want != "" && !strings.Contains(err.Error(), tc.want):
				t.Fatalf("Validate: %v, want it to name %q", err, tc.want)
			}
			if err != nil {
				assertNoSecret(t, "Validate error", err.Error())
				// A pipeline.Config with it is refused by New, before any I/O.
				if _, err := pipeline.New(pipeline.Config{Brokers: []string{"x:1"}, Registry: "http://x", StateDir: t.TempDir(), Security: tc.s}); err == nil {
					t.Fatal("pipeline.New accepted an invalid Security")
				}
			}
		})
	}
}

func TestSecurityFileErrors(t *testing.T) {
	dir := t.TempDir()
	empty := filepath.Join(dir, "empty")
	writeFile(t, empty, "\n")
	for _, tc := range []struct {
		name string
		s    kafkaconn.Security
		want string
	}{
		{"missing password file", kafkaconn.Security{SASLMechanism: "PLAIN", SASLUser: "u", SASLPasswordFile: filepath.Join(dir, "nope")}, "Security.SASLPasswordFile"},
		{"empty password file", kafkaconn.Security{SASLMechanism: "PLAIN", SASLUser: "u", SASLPasswordFile: empty}, "is empty"},
		{"missing CA", kafkaconn.Security{TLSCAFile: filepath.Join(dir, "nope")}, "Security.TLSCAFile"},
		{"CA without PEM", kafkaconn.Security{TLSCAFile: empty}, "no PEM certificate"},
		{"missing cert", kafkaconn.Security{TLSCertFile: filepath.Join(dir, "c"), TLSKeyFile: filepath.Join(dir, "k")}, "Security.TLSCertFile"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := tc.s.KafkaOpts()
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("KafkaOpts: %v, want an error naming %q", err, tc.want)
			}
		})
	}
	for _, tc := range []struct {
		name string
		s    kafkaconn.Security
		want string
	}{
		{"missing registry password file", kafkaconn.Security{RegistryUser: "u", RegistryPasswordFile: filepath.Join(dir, "nope")}, "Security.RegistryPasswordFile"},
		{"empty token file", kafkaconn.Security{RegistryTokenFile: empty}, "Security.RegistryTokenFile"},
		{"missing registry CA", kafkaconn.Security{RegistryCAFile: filepath.Join(dir, "nope")}, "Security.RegistryCAFile"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := tc.s.RegistryOpts()
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("RegistryOpts: %v, want an error naming %q", err, tc.want)
			}
		})
	}
}

// TestKafkaSASL connects to a kfake cluster with SASL on, with each
// mechanism, the password given directly or from a file.
func TestKafkaSASL(t *testing.T) {
	for _, mech := range []string{kafkaconn.SASLPlain, kafkaconn.SASLScramSHA256, kafkaconn.SASLScramSHA512} {
		t.Run(mech, func(t *testing.T) {
			t.Parallel()
			c := newCluster(t, kfake.EnableSASL(), kfake.Superuser(mech, "alice", kafkaPass))

			sec := kafkaconn.Security{SASLMechanism: mech, SASLUser: "alice", SASLPassword: kafkaPass}
			roundTrip(t, c, sec, "direct")

			pwFile := filepath.Join(t.TempDir(), "password")
			writeFile(t, pwFile, kafkaPass+"\n") // as kubectl create secret --from-file often leaves it
			sec = kafkaconn.Security{SASLMechanism: strings.ToLower(mech), SASLUser: "alice", SASLPasswordFile: pwFile}
			roundTrip(t, c, sec, "fromfile")

			sec = kafkaconn.Security{SASLMechanism: mech, SASLUser: "alice", SASLPassword: "wrong"}
			if err := connectErr(t, c, sec); err == nil {
				t.Fatal("wrong password: the cluster accepted the client")
			} else {
				t.Logf("wrong password: %v", err)
			}
			if err := connectErr(t, c, kafkaconn.Security{}); err == nil {
				t.Fatal("no SASL: the cluster accepted the client")
			}
		})
	}
}

// TestKafkaTLS connects to a kfake cluster over TLS (with SCRAM on top),
// then with mutual TLS; a client that trusts another CA, or has no client
// certificate where one is required, is refused.
func TestKafkaTLS(t *testing.T) {
	dir := t.TempDir()
	ca := newCA(t, "test CA")
	other := newCA(t, "other CA")
	caFile, otherFile := filepath.Join(dir, "ca.pem"), filepath.Join(dir, "other.pem")
	writeFile(t, caFile, string(ca.pem))
	writeFile(t, otherFile, string(other.pem))

	t.Run("tls+scram", func(t *testing.T) {
		t.Parallel()
		c := newCluster(t, kfake.TLS(&tls.Config{Certificates: []tls.Certificate{ca.leaf(t, "broker", true)}}),
			kfake.EnableSASL(), kfake.Superuser(kafkaconn.SASLScramSHA512, "alice", kafkaPass))
		sec := kafkaconn.Security{TLS: true, TLSCAFile: caFile, SASLMechanism: kafkaconn.SASLScramSHA512, SASLUser: "alice", SASLPassword: kafkaPass}
		roundTrip(t, c, sec, "tls")

		bad := sec
		bad.TLSCAFile = otherFile
		err := connectErr(t, c, bad)
		if err == nil {
			t.Fatal("wrong CA: the client trusted the broker")
		}
		var uerr x509.UnknownAuthorityError
		if !errors.As(err, &uerr) && !strings.Contains(err.Error(), "certificate") {
			t.Errorf("wrong CA: %v, want a certificate verification error", err)
		}
		if err := connectErr(t, c, kafkaconn.Security{TLS: true, TLSServerName: "not-the-broker", TLSCAFile: caFile,
			SASLMechanism: kafkaconn.SASLScramSHA512, SASLUser: "alice", SASLPassword: kafkaPass}); err == nil {
			t.Fatal("wrong server name: the client trusted the broker")
		}
		plain := sec
		plain.TLS, plain.TLSCAFile = false, ""
		if err := connectErr(t, c, plain); err == nil {
			t.Fatal("plaintext to a TLS listener succeeded")
		}
	})

	t.Run("mtls", func(t *testing.T) {
		t.Parallel()
		pool := x509.NewCertPool()
		pool.AddCert(ca.cert)
		c := newCluster(t, kfake.TLS(&tls.Config{
			Certificates: []tls.Certificate{ca.leaf(t, "broker", true)},
			ClientAuth:   tls.RequireAndVerifyClientCert,
			ClientCAs:    pool,
		}))
		certFile, keyFile := filepath.Join(dir, "client.pem"), filepath.Join(dir, "client-key.pem")
		client := ca.leaf(t, "client", false)
		writeFile(t, certFile, string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: client.Certificate[0]})))
		der, err := x509.MarshalECPrivateKey(client.PrivateKey.(*ecdsa.PrivateKey))
		if err != nil {
			t.Fatal(err)
		}
		writeFile(t, keyFile, string(pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der})))

		roundTrip(t, c, kafkaconn.Security{TLSCAFile: caFile, TLSCertFile: certFile, TLSKeyFile: keyFile}, "mtls")
		if err := connectErr(t, c, kafkaconn.Security{TLSCAFile: caFile}); err == nil {
			t.Fatal("no client certificate: the broker accepted the client")
		}
	})
}

// TestRegistryAuth talks to srfake behind TLS with basic auth, then with a
// bearer token; without them, or with the wrong CA, it is refused.
func TestRegistryAuth(t *testing.T) {
	dir := t.TempDir()
	basic := "Basic " + base64.StdEncoding.EncodeToString([]byte("bob:"+registryPass))
	for _, tc := range []struct {
		name string
		auth string
		good kafkaconn.Security
		bad  []kafkaconn.Security
	}{
		{"basic", basic,
			kafkaconn.Security{RegistryUser: "bob", RegistryPassword: registryPass},
			[]kafkaconn.Security{{}, {RegistryUser: "bob", RegistryPassword: "wrong"}, {RegistryToken: registryPass}}},
		{"bearer", "Bearer " + registryTok,
			kafkaconn.Security{RegistryTokenFile: writeFile(t, filepath.Join(dir, "token"), registryTok+"\n")},
			[]kafkaconn.Security{{}, {RegistryToken: "wrong"}, {RegistryUser: "bob", RegistryPassword: registryTok}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			reg := srfake.NewRegistry(srfake.WithAuth(tc.auth))
			srv := tlsServer(t, reg.Handler())
			caFile := filepath.Join(t.TempDir(), "ca.pem")
			writeFile(t, caFile, string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw})))

			sec := tc.good
			sec.RegistryCAFile = caFile
			if err := registryErr(t, srv.URL, sec); err != nil {
				t.Fatalf("right credentials: %v", err)
			}
			for i, b := range tc.bad {
				b.RegistryCAFile = caFile
				err := registryErr(t, srv.URL, b)
				var rerr *sr.ResponseError
				if !errors.As(err, &rerr) || rerr.StatusCode != http.StatusUnauthorized && rerr.StatusCode != http.StatusForbidden {
					t.Errorf("bad credentials %d: %v, want 401 or 403", i, err)
				}
			}
			sec.RegistryCAFile = ""
			if err := registryErr(t, srv.URL, sec); err == nil {
				t.Fatal("no CA: the client trusted the registry's self-signed certificate")
			}
		})
	}
}

// TestSecurityRedacted prints and logs a Security full of secrets, and a
// Config holding it, every way a program might, and finds no secret.
func TestSecurityRedacted(t *testing.T) {
	sec := kafkaconn.Security{
		SASLMechanism: "SCRAM-SHA-512", SASLUser: "alice", SASLPassword: kafkaPass,
		TLS: true, TLSCAFile: "/etc/ca.pem",
		RegistryUser: "bob", RegistryPassword: registryPass, RegistryToken: registryTok,
	}
	cfg := pipeline.Config{Brokers: []string{"b:9092"}, Security: sec}
	var out []string
	for _, f := range []string{"%v", "%+v", "%#v", "%s"} {
		out = append(out, fmt.Sprintf(f, sec), fmt.Sprintf(f, &sec), fmt.Sprintf(f, cfg), fmt.Sprintf(f, &cfg))
	}
	js, err := json.Marshal(sec)
	if err != nil {
		t.Fatal(err)
	}
	out = append(out, string(js))
	js, err = json.Marshal(struct{ S kafkaconn.Security }{sec})
	if err != nil {
		t.Fatal(err)
	}
	out = append(out, string(js))
	var buf bytes.Buffer
	for _, h := range []slog.Handler{slog.NewTextHandler(&buf, nil), slog.NewJSONHandler(&buf, nil)} {
		l := slog.New(h)
		l.Info("security", "security", sec, "ptr", &sec, "config", cfg)
		l.Info("security", slog.Any("security", sec))
	}
	out = append(out, buf.String())
	for _, s := range out {
		assertNoSecret(t, "output", s)
		if !strings.Contains(s, "alice") || !strings.Contains(s, "REDACTED") {
			t.Errorf("output %q: want the user and a redaction mark", s)
		}
	}
	// Negative control: without its methods, the same value does show
	// its secrets, so the checks above can fail.
	type raw kafkaconn.Security
	if s := fmt.Sprintf("%+v", raw(sec)); !strings.Contains(s, kafkaPass) || !strings.Contains(s, registryTok) {
		t.Errorf("negative control: %q should hold the secrets", s)
	}
	t.Logf("String: %s", sec)
	t.Logf("slog: %s", buf.String())
}

// TestRunSecure runs the pipeline against kfake with TLS and SCRAM and a
// TLS schema registry with basic auth (secrets from files) until it is
// ready, and checks that its log holds no secret.
func TestRunSecure(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the pipeline")
	}
	dir := t.TempDir()
	ca := newCA(t, "test CA")
	caFile := writeFile(t, filepath.Join(dir, "ca.pem"), string(ca.pem))
	c := newCluster(t, kfake.TLS(&tls.Config{Certificates: []tls.Certificate{ca.leaf(t, "broker", true)}}),
		kfake.EnableSASL(), kfake.Superuser(kafkaconn.SASLScramSHA256, "sponsor", kafkaPass))

	reg := srfake.NewRegistry(srfake.WithAuth("Basic " + base64.StdEncoding.EncodeToString([]byte("sponsor:"+registryPass))))
	srv := tlsServer(t, reg.Handler())
	regCA := writeFile(t, filepath.Join(dir, "registry-ca.pem"), string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw})))

	var logs syncBuffer
	r, err := pipeline.New(pipeline.Config{
		Brokers:      c.ListenAddrs(),
		Registry:     srv.URL,
		StateDir:     filepath.Join(dir, "state"),
		CreateTopics: true,
		Partitions:   2,
		Logger:       slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
		Security: kafkaconn.Security{
			TLSCAFile:     caFile,
			SASLMechanism: kafkaconn.SASLScramSHA256, SASLUser: "sponsor",
			SASLPasswordFile: writeFile(t, filepath.Join(dir, "kafka-password"), kafkaPass+"\n"),
			RegistryUser:     "sponsor",
			RegistryPassword: registryPass,
			RegistryCAFile:   regCA,
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	deadline := time.After(60 * time.Second)
	for !r.Ready() {
		select {
		case err := <-done:
			cancel()
			t.Fatalf("Run returned before ready: %v\n%s", err, logs.String())
		case <-deadline:
			cancel()
			<-done
			t.Fatalf("not ready after 60s\n%s", logs.String())
		case <-time.After(50 * time.Millisecond):
		}
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("Run: %v", err)
	}
	if !reg.SubjectExists("inbox-value") {
		t.Error("the pipeline did not register inbox-value with the authenticated registry")
	}
	out := logs.String()
	if !strings.Contains(out, "pipeline started") || !strings.Contains(out, "sasl_mechanism=SCRAM-SHA-256") {
		t.Errorf("log lacks the start line with the security settings:\n%s", out)
	}
	assertNoSecret(t, "pipeline log", out)
}

func assertNoSecret(t *testing.T, what, s string) {
	t.Helper()
	for _, secret := range []string{kafkaPass, registryPass, registryTok} {
		if strings.Contains(s, secret) {
			t.Errorf("%s contains a secret: %s", what, s)
		}
	}
}

func newCluster(t *testing.T, opts ...kfake.Opt) *kfake.Cluster {
	t.Helper()
	c, err := kfake.NewCluster(append([]kfake.Opt{kfake.NumBrokers(1)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c
}

// client returns a kgo client to c built from sec.KafkaOpts.
func client(t *testing.T, c *kfake.Cluster, sec kafkaconn.Security, extra ...kgo.Opt) *kgo.Client {
	t.Helper()
	opts, err := sec.KafkaOpts()
	if err != nil {
		t.Fatalf("KafkaOpts: %v", err)
	}
	cl, err := kgo.NewClient(append(append([]kgo.Opt{kgo.SeedBrokers(c.ListenAddrs()...)}, opts...), extra...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	return cl
}

// roundTrip creates topic, produces a record and consumes it with a
// client built from sec.
func roundTrip(t *testing.T, c *kfake.Cluster, sec kafkaconn.Security, topic string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	adm := kadm.NewClient(client(t, c, sec))
	if _, err := adm.CreateTopic(ctx, 1, -1, nil, topic); err != nil {
		t.Fatalf("create topic %s: %v", topic, err)
	}
	if err := client(t, c, sec).ProduceSync(ctx, &kgo.Record{Topic: topic, Value: []byte("hello")}).FirstErr(); err != nil {
		t.Fatalf("produce: %v", err)
	}
	cons := client(t, c, sec, kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	fs := cons.PollFetches(ctx)
	if err := fs.Err(); err != nil {
		t.Fatalf("consume: %v", err)
	}
	if recs := fs.Records(); len(recs) != 1 || string(recs[0].Value) != "hello" {
		t.Fatalf("consumed %v, want the record produced", recs)
	}
}

// connectErr returns the error of a request by a client built from sec.
func connectErr(t *testing.T, c *kfake.Cluster, sec kafkaconn.Security) error {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	cl := client(t, c, sec, kgo.RequestRetries(0), kgo.RetryTimeout(time.Second))
	_, err := kadm.NewClient(cl).ListTopics(ctx)
	return err
}

// registryErr returns the error of a request to the registry at url by a
// client with sec.RegistryOpts.
func registryErr(t *testing.T, url string, sec kafkaconn.Security) error {
	t.Helper()
	opts, err := sec.RegistryOpts()
	if err != nil {
		t.Fatalf("RegistryOpts: %v", err)
	}
	rc, err := sr.NewClient(append([]sr.ClientOpt{sr.URLs(url)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	_, err = rc.Subjects(context.Background())
	return err
}

// tlsServer serves h over TLS (httptest's self-signed certificate), quiet
// about the handshakes the tests make fail on purpose.
func tlsServer(t *testing.T, h http.Handler) *httptest.Server {
	srv := httptest.NewUnstartedServer(h)
	srv.Config.ErrorLog = log.New(io.Discard, "", 0)
	srv.StartTLS()
	t.Cleanup(srv.Close)
	return srv
}

func writeFile(t *testing.T, path, content string) string {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// testCA is a certificate authority made for one test.
type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pem  []byte
}

func newCA(t *testing.T, name string) *testCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: name},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return &testCA{cert: cert, key: key, pem: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})}
}

// leaf issues a certificate: a server's for localhost and 127.0.0.1, or a
// client's.
func (ca *testCA) leaf(t *testing.T, name string, server bool) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()),
		Subject:      pkix.Name{CommonName: name},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	if server {
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
		tmpl.DNSNames = []string{"localhost"}
		tmpl.IPAddresses = []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

// syncBuffer is a bytes.Buffer safe for the pipeline's goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}
