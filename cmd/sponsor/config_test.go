package main

import (
	"strings"
	"testing"
)

func TestConfigPrintRedactsAndNamesSources(t *testing.T) {
	t.Setenv("SPONSOR_SASL_PASSWORD", "hunter2-secret")
	t.Setenv("SPONSOR_GROUP", "from-env")
	var out strings.Builder
	err := configPrint([]string{"print", "--brokers", "k:9092", "--registry", "http://r", "--state-dir", t.TempDir(),
		"--sasl-mechanism", "SCRAM-SHA-256", "--sasl-user", "u", "--registry-token", "tok-secret"}, &out)
	if err != nil {
		t.Fatalf("config print: %v", err)
	}
	got := out.String()
	for _, secret := range []string{"hunter2-secret", "tok-secret"} {
		if strings.Contains(got, secret) {
			t.Errorf("config print shows the secret %q:\n%s", secret, got)
		}
	}
	for _, want := range []string{
		`sasl-password            "[REDACTED]"`, "# env SPONSOR_SASL_PASSWORD",
		`registry-token           "[REDACTED]"`,
		`group                    "from-env"                       # env SPONSOR_GROUP`,
		`brokers                  "k:9092"                         # flag`,
		`fanout-chunk             "5000"                           # default`,
	} {
		if !strings.Contains(got, want) {
			t.Errorf("config print lacks %q:\n%s", want, got)
		}
	}
}

func TestConfigPrintReportsInvalidConfig(t *testing.T) {
	var out strings.Builder
	err := configPrint([]string{"print", "--registry", "http://r", "--state-dir", t.TempDir()}, &out)
	if err == nil || !strings.Contains(err.Error(), "--brokers: at least one broker is required") {
		t.Fatalf("config print without brokers: got %v, want an error naming --brokers", err)
	}
	// The errors name the flags (or file keys) a user sets, not the Go
	// fields of pipeline.Config.
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--sasl-user", "u"}, "--sasl-user, --sasl-password, --sasl-password-file: set without --sasl-mechanism"},
		{[]string{"--sasl-mechanism", "PLAIN"}, "--sasl-user: required with SASL mechanism PLAIN"},
		{[]string{"--registry-token", "t", "--registry-user", "u", "--registry-password", "p"}, "--registry-token: a bearer token and basic auth (--registry-user) are exclusive"},
		{[]string{"--max-poll-records", "-1"}, "--max-poll-records: must be positive, got -1"},
		{[]string{"--user-cap", "-1"}, "--user-cap must be 0 (off) or positive"},
		{[]string{"--tls-cert-file", "c.pem"}, "--tls-cert-file, --tls-key-file: a client certificate needs both"},
	} {
		args := append([]string{"print", "--brokers", "b:9092", "--registry", "http://r", "--state-dir", t.TempDir()}, tc.args...)
		err := configPrint(args, &strings.Builder{})
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("config print %v: %v, want %q", tc.args, err, tc.want)
		}
		if err != nil && strings.Contains(err.Error(), "Security.") {
			t.Errorf("config print %v: %v names a Go field", tc.args, err)
		}
	}
	if !strings.Contains(out.String(), "registry") {
		t.Errorf("config print printed nothing before the error:\n%s", out.String())
	}
}
