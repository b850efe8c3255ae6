package main

import (
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"sigs.k8s.io/yaml"
)

// configLine matches a line of `sponsor config print` for flag name, with
// its value and its source.
func configLine(name, value, source string) *regexp.Regexp {
	return regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(name) + ` +` + regexp.QuoteMeta(`"`+value+`"`) + ` +# ` + regexp.QuoteMeta(source) + `$`)
}

// TestConfigFilePrecedence sets flags from all four sources: the command
// line wins over SPONSOR_* variables, which win over the --config file,
// which wins over the defaults; config print names each source.
func TestConfigFilePrecedence(t *testing.T) {
	file := writeFile(t, "sponsor.yaml", `
brokers: [k1:9092, k2:9092]   # a list is joined with commas
registry: http://registry:8081
state-dir: /var/lib/sponsor
group: from-file
log-level: warn
fanout-chunk: 1234
conversation-gap: 24h
static: true
`)
	t.Setenv("SPONSOR_GROUP", "from-env")
	t.Setenv("SPONSOR_LOG_LEVEL", "debug")
	_, f, err := parseRun([]string{"--config", file, "--group", "from-flag"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.finish(); err != nil {
		t.Fatal(err)
	}
	if got, want := f.cfg.Group, "from-flag"; got != want {
		t.Errorf("group = %q, want %q (flag over env over file)", got, want)
	}
	if got, want := f.logLevel, "debug"; got != want {
		t.Errorf("log-level = %q, want %q (env over file)", got, want)
	}
	if f.cfg.FanoutChunk != 1234 || f.gap != 24*time.Hour || !f.static || f.cfg.StateDir != "/var/lib/sponsor" {
		t.Errorf("from the file: fanout-chunk %d, conversation-gap %s, static %v, state-dir %q; want 1234, 24h, true, /var/lib/sponsor",
			f.cfg.FanoutChunk, f.gap, f.static, f.cfg.StateDir)
	}
	if got := strings.Join(f.cfg.Brokers, ","); got != "k1:9092,k2:9092" {
		t.Errorf("brokers = %q, want k1:9092,k2:9092", got)
	}
	if f.cfg.MaxPollRecords != 5000 {
		t.Errorf("max-poll-records = %d, want the default 5000", f.cfg.MaxPollRecords)
	}

	// The same through SPONSOR_CONFIG, as config print shows it.
	t.Setenv("SPONSOR_CONFIG", file)
	var out strings.Builder
	if err := configPrint([]string{"print", "--group", "from-flag"}, &out); err != nil {
		t.Fatalf("config print: %v\n%s", err, out.String())
	}
	for _, want := range []*regexp.Regexp{
		configLine("group", "from-flag", "flag"),
		configLine("log-level", "debug", "env SPONSOR_LOG_LEVEL"),
		configLine("fanout-chunk", "1234", "file "+file),
		configLine("brokers", "k1:9092,k2:9092", "file "+file),
		configLine("conversation-gap", "24h0m0s", "file "+file),
		configLine("max-poll-records", "5000", "default"),
		configLine("config", file, "env SPONSOR_CONFIG"),
	} {
		if !want.MatchString(out.String()) {
			t.Errorf("config print lacks a line matching %s:\n%s", want, out.String())
		}
	}

	// --config on the command line wins over SPONSOR_CONFIG.
	other := writeFile(t, "other.yaml", "fanout-chunk: 77\n")
	_, f, err = parseRun([]string{"--config=" + other})
	if err != nil || f.cfg.FanoutChunk != 77 || f.cfg.StateDir != "" {
		t.Errorf("--config=%s with SPONSOR_CONFIG=%s: fanout-chunk %d, state-dir %q, err %v; want 77 from the flag's file only", other, file, f.cfg.FanoutChunk, f.cfg.StateDir, err)
	}
}

// TestConfigFileStrict wants an error naming the file and the key for an
// unknown key, and naming the key for a value of the wrong type.
func TestConfigFileStrict(t *testing.T) {
	for _, tc := range []struct {
		name, yaml string
		want       []string
	}{
		{"unknown key", "state-dir: /x\nstat-dir: /y\n", []string{`unknown key "stat-dir": did you mean "state-dir"?`}},
		{"misspelt key", "sasl_mechanizm: PLAIN\n", []string{`unknown key "sasl_mechanizm": did you mean "sasl-mechanism"?`}},
		{"far from every key", "colour: blue\n", []string{`unknown key "colour" (keys are the flags`}},
		{"dev flag in run", "kafka-port: 29092\n", []string{`unknown key "kafka-port"`}},
		{"nested config", "config: other.yaml\n", []string{`key "config"`}},
		{"string for an int", "fanout-chunk: lots\n", []string{`key "fanout-chunk": want an integer, got the string "lots"`}},
		{"float for an int", "user-cap: 1.5\n", []string{`key "user-cap": want an integer, got the number 1.5`}},
		{"number for a duration", "session-timeout: 10\n", []string{`key "session-timeout": want a duration such as 10s or 24h, got the number 10`}},
		{"bad duration", "session-timeout: soon\n", []string{`key "session-timeout": `, "soon"}},
		{"string for a bool", "static: \"true\"\n", []string{`key "static": want true or false, got the string "true"`}},
		{"number for a string", "group: 2024\n", []string{`key "group": want a string, got the number 2024 (quote it)`}},
		{"mapping for a string", "registry:\n  url: http://r\n", []string{`key "registry": want a string, got a mapping`}},
		{"two errors", "fanout-chunk: x\nbogus: 1\n", []string{`unknown key "bogus"`, `key "fanout-chunk"`}},
		{"duplicate key", "group: a\ngroup: b\n", []string{"group"}},
		{"not a mapping", "- a\n- b\n", []string{"want a mapping"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			file := writeFile(t, "bad.yaml", tc.yaml)
			_, _, err := parseRun([]string{"--config", file})
			if err == nil {
				t.Fatalf("no error for:\n%s", tc.yaml)
			}
			for _, w := range append(tc.want, file) {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q lacks %q", err, w)
				}
			}
		})
	}
	if _, _, err := parseRun([]string{"--config", "/nonexistent/sponsor.yaml"}); err == nil || !strings.Contains(err.Error(), "/nonexistent/sponsor.yaml") {
		t.Errorf("missing file: %v, want an error naming it", err)
	}
	if _, f, err := parseRun([]string{"--config", writeFile(t, "empty.yaml", "# nothing yet\n")}); err != nil || f.cfg.FanoutChunk != 5000 {
		t.Errorf("empty file: %v, fanout-chunk %d; want no error and the defaults", err, f.cfg.FanoutChunk)
	}
}

// TestConfigFileRedactsSecrets puts secrets in the file: config print shows
// where they come from, never what they are.
func TestConfigFileRedactsSecrets(t *testing.T) {
	file := writeFile(t, "secret.yaml", `
brokers: k:9092
registry: http://r
state-dir: /tmp/s
sasl-mechanism: PLAIN
sasl-user: u
sasl-password: hunter2-from-file
registry-token: tok-from-file
`)
	var out strings.Builder
	if err := configPrint([]string{"print", "--config", file}, &out); err != nil {
		t.Fatalf("config print: %v\n%s", err, out.String())
	}
	for _, secret := range []string{"hunter2-from-file", "tok-from-file"} {
		if strings.Contains(out.String(), secret) {
			t.Errorf("config print shows the secret %q:\n%s", secret, out.String())
		}
	}
	for _, want := range []*regexp.Regexp{
		configLine("sasl-password", "[REDACTED]", "file "+file),
		configLine("registry-token", "[REDACTED]", "file "+file),
		configLine("sasl-user", "u", "file "+file),
	} {
		if !want.MatchString(out.String()) {
			t.Errorf("config print lacks a line matching %s:\n%s", want, out.String())
		}
	}
}

// TestExampleConfigFile parses deploy/sponsor.example.yaml as `sponsor run`
// would: every key is a flag, of the right type, the configuration is valid,
// and config print attributes every key to the file.
func TestExampleConfigFile(t *testing.T) {
	const file = "../../deploy/sponsor.example.yaml"
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	var keys map[string]any
	if err := yaml.Unmarshal(data, &keys); err != nil || len(keys) < 10 {
		t.Fatalf("example: %d keys, %v", len(keys), err)
	}
	var out strings.Builder
	if err := configPrint([]string{"print", "--config", file}, &out); err != nil {
		t.Fatalf("config print --config %s: %v\n%s", file, err, out.String())
	}
	for k := range keys {
		if !regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(k) + ` .*# file ` + regexp.QuoteMeta(file) + `$`).MatchString(out.String()) {
			t.Errorf("config print does not attribute %s to the example file:\n%s", k, out.String())
		}
	}
}

// TestGraceAndClockSkewSettings: --grace and --max-clock-skew reach the
// pipeline's configuration from the file, SPONSOR_* variables and flags,
// and their defaults are no grace and a 5-minute skew.
func TestGraceAndClockSkewSettings(t *testing.T) {
	_, f, err := parseRun(nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.finish(); err != nil {
		t.Fatal(err)
	}
	if f.cfg.Policy.Grace != 0 || f.cfg.MaxClockSkew != 5*time.Minute {
		t.Errorf("defaults: grace %s, max-clock-skew %s; want 0s and 5m0s", f.cfg.Policy.Grace, f.cfg.MaxClockSkew)
	}
	file := writeFile(t, "sponsor.yaml", "grace: 2m\nmax-clock-skew: 1m\n")
	t.Setenv("SPONSOR_GRACE", "3m")
	_, f, err = parseRun([]string{"--config", file})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.finish(); err != nil {
		t.Fatal(err)
	}
	if f.cfg.Policy.Grace != 3*time.Minute || f.cfg.MaxClockSkew != time.Minute {
		t.Errorf("grace %s (want 3m0s from SPONSOR_GRACE over the file), max-clock-skew %s (want 1m0s from the file)", f.cfg.Policy.Grace, f.cfg.MaxClockSkew)
	}
	_, f, err = parseRun([]string{"--grace", "-1s"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.finish(); err != nil {
		t.Fatal(err)
	}
	if err := f.cfg.Policy.Validate(); err == nil || !strings.Contains(err.Error(), "Grace") {
		t.Errorf("--grace -1s: want an error naming Grace, got %v", err)
	}
}

// TestStandbyReplicasSources: --standby-replicas is also the YAML key
// standby-replicas and SPONSOR_STANDBY_REPLICAS, into
// Config.StandbyReplicas; 0 by default.
func TestStandbyReplicasSources(t *testing.T) {
	if _, f, err := parseRun(nil); err != nil || f.cfg.StandbyReplicas != 0 {
		t.Fatalf("default: standby replicas %d, err %v; want 0, nil", f.cfg.StandbyReplicas, err)
	}
	file := writeFile(t, "sponsor.yaml", "standby-replicas: 2\n")
	if _, f, err := parseRun([]string{"--config", file}); err != nil || f.cfg.StandbyReplicas != 2 {
		t.Errorf("from the file: standby replicas %d, err %v; want 2, nil", f.cfg.StandbyReplicas, err)
	}
	t.Setenv("SPONSOR_STANDBY_REPLICAS", "1")
	if _, f, err := parseRun([]string{"--config", file}); err != nil || f.cfg.StandbyReplicas != 1 {
		t.Errorf("from the environment: standby replicas %d, err %v; want 1 (env over file), nil", f.cfg.StandbyReplicas, err)
	}
	if _, f, err := parseRun([]string{"--config", file, "--standby-replicas", "3"}); err != nil || f.cfg.StandbyReplicas != 3 {
		t.Errorf("from the flag: standby replicas %d, err %v; want 3, nil", f.cfg.StandbyReplicas, err)
	}
}
