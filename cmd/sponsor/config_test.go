package main

import (
	"strings"
	"testing"
)

func TestConfigPrintRedactsAndNamesSources(t *testing.T) {
	t.Setenv("SPONSOR_SASL_PASSWORD", "hunter2-secret")
	t.Setenv("SPONSOR_GROUP", "from-env")
	var out strings.Builder
	err := cmdConfig([]string{"print", "--brokers", "k:9092", "--registry", "http://r", "--state-dir", t.TempDir(),
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
	err := cmdConfig([]string{"print", "--registry", "http://r", "--state-dir", t.TempDir()}, &out)
	if err == nil || !strings.Contains(err.Error(), "Brokers") {
		t.Fatalf("config print without brokers: got %v, want an error naming Brokers", err)
	}
	if !strings.Contains(out.String(), "registry") {
		t.Errorf("config print printed nothing before the error:\n%s", out.String())
	}
}
