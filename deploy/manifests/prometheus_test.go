package manifests

import (
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	dto "github.com/prometheus/client_model/go"
	"sigs.k8s.io/yaml"
)

const (
	alertRules     = "deploy/prometheus/sponsor-rules.yaml"
	alertRulesTest = "deploy/prometheus/sponsor-rules.test.yaml"
)

// ruleFile is the part of a Prometheus rule file these tests read.
type ruleFile struct {
	Groups []struct {
		Name  string `json:"name"`
		Rules []struct {
			Alert       string            `json:"alert"`
			Record      string            `json:"record"`
			Expr        string            `json:"expr"`
			For         string            `json:"for"`
			Labels      map[string]string `json:"labels"`
			Annotations map[string]string `json:"annotations"`
		} `json:"rules"`
	} `json:"groups"`
}

// TestAlertRulesPromtool runs promtool on the rule file and on its unit
// tests (sponsor-rules.test.yaml: each alert firing on the series it is
// for and quiet on look-alikes). promtool is in Debian's prometheus
// package; .ci/run installs it.
func TestAlertRulesPromtool(t *testing.T) {
	promtool, err := exec.LookPath("promtool")
	if err != nil {
		t.Skip("promtool is not on PATH: the alert rules' unit tests did not run (it is in Debian's prometheus package; .ci/run installs it)")
	}
	dir := filepath.Join(root, "deploy/prometheus")
	for _, args := range [][]string{
		{"check", "rules", filepath.Base(alertRules)},
		{"test", "rules", filepath.Base(alertRulesTest)},
	} {
		cmd := exec.Command(promtool, args...)
		cmd.Dir = dir
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Errorf("promtool %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
}

// TestAlertRulesMetrics checks that the alert rules read only metrics the
// pipeline exports (a renamed metric breaks this test, not an alert that
// would then never fire), that every alert says what it is about and
// where its runbook section is, and that the unit tests cover every alert.
func TestAlertRulesMetrics(t *testing.T) {
	exported := exportedMetrics(t)
	var rf ruleFile
	if err := yaml.UnmarshalStrict(readFile(t, alertRules), &rf); err != nil {
		t.Fatalf("%s: %v", alertRules, err)
	}
	runbook := string(readFile(t, "docs/runbook.md"))
	var alerts []string
	for _, g := range rf.Groups {
		for _, r := range g.Rules {
			name := r.Alert + r.Record
			if r.Alert != "" {
				alerts = append(alerts, r.Alert)
			}
			names := promMetrics(r.Expr)
			if len(names) == 0 {
				t.Errorf("rule %s reads no metric: %s", name, r.Expr)
			}
			for _, n := range names {
				typ, ok := exported[n]
				if base := strings.TrimSuffix(strings.TrimSuffix(strings.TrimSuffix(n, "_bucket"), "_sum"), "_count"); !ok && base != n {
					typ, ok = exported[base]
					ok = ok && (typ == dto.MetricType_HISTOGRAM || typ == dto.MetricType_SUMMARY)
				}
				if !ok {
					t.Errorf("rule %s reads %s, which the pipeline does not export (expr: %s)", name, n, r.Expr)
				}
			}
			if r.Alert == "" {
				continue
			}
			if r.Labels["severity"] == "" || r.Annotations["summary"] == "" || r.Annotations["description"] == "" {
				t.Errorf("alert %s: want a severity label and summary and description annotations, got %v %v", r.Alert, r.Labels, r.Annotations)
			}
			doc, anchor, _ := strings.Cut(r.Annotations["runbook"], "#")
			if doc != "docs/runbook.md" || !slices.Contains(runbookAnchors(runbook), anchor) {
				t.Errorf("alert %s: runbook annotation %q is not a section of docs/runbook.md (sections: %v)", r.Alert, r.Annotations["runbook"], runbookAnchors(runbook))
			}
		}
	}
	if len(alerts) == 0 {
		t.Fatalf("%s has no alert", alertRules)
	}
	var tf struct {
		Tests []struct {
			AlertRuleTest []struct {
				Alertname string `json:"alertname"`
			} `json:"alert_rule_test"`
		} `json:"tests"`
	}
	if err := yaml.Unmarshal(readFile(t, alertRulesTest), &tf); err != nil {
		t.Fatalf("%s: %v", alertRulesTest, err)
	}
	tested := map[string]bool{}
	for _, c := range tf.Tests {
		for _, a := range c.AlertRuleTest {
			tested[a.Alertname] = true
		}
	}
	for _, a := range alerts {
		if !tested[a] {
			t.Errorf("alert %s has no case in %s", a, alertRulesTest)
		}
	}
}

var mdHeading = regexp.MustCompile(`(?m)^##+ (.+)$`)

// runbookAnchors returns the anchors of the Markdown headings of doc, as
// GitHub makes them: lower case, spaces to dashes, punctuation dropped.
func runbookAnchors(doc string) []string {
	var out []string
	for _, m := range mdHeading.FindAllStringSubmatch(doc, -1) {
		var b strings.Builder
		for _, r := range strings.ToLower(strings.TrimSpace(m[1])) {
			switch {
			case r == ' ':
				b.WriteByte('-')
			case r == '-' || r == '_' || r >= 'a' && r <= 'z' || r >= '0' && r <= '9':
				b.WriteRune(r)
			}
		}
		out = append(out, b.String())
	}
	return out
}
