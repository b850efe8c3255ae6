package main

import (
	"flag"
	"strings"
	"testing"

	"github.com/sponsored/sponsor/kafkaconn"
)

// TestSecurityFlags sets the security settings from the command line and
// from SPONSOR_* variables, and checks that --help shows no secret taken
// from the environment.
func TestSecurityFlags(t *testing.T) {
	t.Setenv("SPONSOR_SASL_PASSWORD", "env-s3cret")
	t.Setenv("SPONSOR_REGISTRY_TOKEN_FILE", "/run/secrets/token")
	t.Setenv("SPONSOR_TLS", "true")
	fs := flag.NewFlagSet("test", flag.ContinueOnError)
	var f pipelineFlags
	f.register(fs, "127.0.0.1:0")
	var help strings.Builder
	fs.SetOutput(&help)
	err := parseFlags(fs, []string{
		"--sasl-mechanism", "SCRAM-SHA-512", "--sasl-user", "alice",
		"--tls-ca-file", "ca.pem", "--tls-cert-file", "c.pem", "--tls-key-file", "k.pem", "--tls-server-name", "kafka.internal",
		"--registry-ca-file", "rca.pem",
	})
	if err != nil {
		t.Fatal(err)
	}
	want := kafkaconn.Security{
		SASLMechanism: "SCRAM-SHA-512", SASLUser: "alice", SASLPassword: "env-s3cret",
		TLS: true, TLSCAFile: "ca.pem", TLSCertFile: "c.pem", TLSKeyFile: "k.pem", TLSServerName: "kafka.internal",
		RegistryTokenFile: "/run/secrets/token", RegistryCAFile: "rca.pem",
	}
	if f.cfg.Security != want {
		t.Errorf("Security = %+v, want %+v", f.cfg.Security, want)
	}
	if err := f.cfg.Security.Validate(); err != nil {
		t.Errorf("Validate: %v", err)
	}
	fs.PrintDefaults()
	if strings.Contains(help.String(), "env-s3cret") {
		t.Errorf("--help shows a secret from the environment:\n%s", help.String())
	}
	for _, name := range []string{"sasl-mechanism", "sasl-user", "sasl-password", "sasl-password-file", "tls", "tls-ca-file",
		"tls-cert-file", "tls-key-file", "tls-server-name", "registry-user", "registry-password", "registry-password-file",
		"registry-token", "registry-token-file", "registry-ca-file"} {
		if fs.Lookup(name) == nil {
			t.Errorf("flag --%s is not registered", name)
		}
	}
}
