package manifests

import (
	"context"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/compose-spec/compose-go/v2/loader"
	"github.com/compose-spec/compose-go/v2/types"
)

// loadCompose loads ../compose/compose.yaml with compose-go as `docker
// compose` would, validating it against the compose specification's
// schema, with an empty environment: the file must not depend on the
// caller's variables.
func loadCompose(t *testing.T) *types.Project {
	t.Helper()
	rel := "deploy/compose/compose.yaml"
	content := readFile(t, rel)
	if strings.Contains(string(content), "$") {
		t.Fatalf("%s uses $: no interpolation, so the file means what it says whatever the environment", rel)
	}
	p, err := parseCompose(mustAbs(t, filepath.Join(root, rel)), content)
	if err != nil {
		t.Fatalf("compose-go: %v", err)
	}
	return p
}

// parseCompose loads and validates one compose file's content offline,
// with an empty environment.
func parseCompose(file string, content []byte) (*types.Project, error) {
	return loader.LoadWithContext(context.Background(), types.ConfigDetails{
		WorkingDir:  filepath.Dir(file),
		ConfigFiles: []types.ConfigFile{{Filename: file, Content: content}},
		Environment: types.Mapping{},
	}, func(o *loader.Options) {
		o.SetProjectName("sponsor", true)
		o.ResolvePaths = true
	})
}

// TestComposeRejectsUnknownKeys is the negative control of TestCompose: the
// loader does validate against the specification.
func TestComposeRejectsUnknownKeys(t *testing.T) {
	for _, bad := range []string{
		"services:\n  a:\n    image: x\n    imagee: y\n",
		"services:\n  a:\n    image: x\n    depends_on:\n      b:\n        condition: service_happy\n  b:\n    image: x\n",
	} {
		if _, err := parseCompose(filepath.Join(t.TempDir(), "compose.yaml"), []byte(bad)); err == nil {
			t.Errorf("compose-go accepted an invalid file:\n%s", bad)
		}
	}
}

func TestCompose(t *testing.T) {
	p := loadCompose(t)

	kafka, ok := p.Services["kafka"]
	if !ok {
		t.Fatal("no kafka service")
	}
	if !strings.HasPrefix(kafka.Image, "apache/kafka:") {
		t.Errorf("kafka: image %s, want the official apache/kafka", kafka.Image)
	}
	if roles := kafka.Environment["KAFKA_PROCESS_ROLES"]; roles == nil || *roles != "broker,controller" {
		t.Errorf("kafka: KAFKA_PROCESS_ROLES=%v, want broker,controller (KRaft, one node)", roles)
	}
	var internal string // the listener the other containers use
	if adv := kafka.Environment["KAFKA_ADVERTISED_LISTENERS"]; adv != nil {
		for _, l := range strings.Split(*adv, ",") {
			if _, addr, ok := strings.Cut(l, "://"); ok && strings.HasPrefix(addr, "kafka:") {
				internal = addr
			}
		}
	}
	if internal == "" {
		t.Fatalf("kafka: no advertised listener on the kafka host name")
	}
	if kafka.HealthCheck == nil || len(kafka.HealthCheck.Test) == 0 {
		t.Errorf("kafka: no healthcheck, so depends_on cannot wait for it")
	}
	registry, ok := p.Services["schema-registry"]
	if !ok {
		t.Fatal("no schema-registry service")
	}
	if registry.HealthCheck == nil {
		t.Errorf("schema-registry: no healthcheck")
	}

	var sponsors []types.ServiceConfig
	for _, s := range p.Services {
		if s.Build != nil {
			sponsors = append(sponsors, s)
		}
	}
	slices.SortFunc(sponsors, func(a, b types.ServiceConfig) int { return strings.Compare(a.Name, b.Name) })
	if len(sponsors) != 3 {
		t.Fatalf("want 3 pipeline services built from the Dockerfile, got %d", len(sponsors))
	}
	ids, volumes := map[string]string{}, map[string]string{}
	for _, s := range sponsors {
		if s.Build.Dockerfile != "Dockerfile" || filepath.Clean(s.Build.Context) != mustAbs(t, root) {
			t.Errorf("%s: builds %s in %s, want the module's Dockerfile", s.Name, s.Build.Dockerfile, s.Build.Context)
		}
		env := map[string]string{}
		var names []string
		for k, v := range s.Environment {
			if v == nil {
				t.Errorf("%s: %s has no value (it would be taken from the caller's environment)", s.Name, k)
				continue
			}
			env[k] = *v
			names = append(names, k)
		}
		checkEnv(t, s.Name+" environment", names)
		if got, want := env["SPONSOR_BROKERS"], internal; got != want {
			t.Errorf("%s: SPONSOR_BROKERS=%q, want %q (the kafka service's internal listener)", s.Name, got, want)
		}
		if !strings.HasPrefix(env["SPONSOR_REGISTRY"], "http://schema-registry:") {
			t.Errorf("%s: SPONSOR_REGISTRY=%q, want the schema-registry service", s.Name, env["SPONSOR_REGISTRY"])
		}
		if env["SPONSOR_HTTP"] != "0.0.0.0:8080" {
			t.Errorf("%s: SPONSOR_HTTP=%q, want 0.0.0.0:8080", s.Name, env["SPONSOR_HTTP"])
		}
		id := env["SPONSOR_INSTANCE_ID"]
		if id == "" {
			t.Errorf("%s: no SPONSOR_INSTANCE_ID", s.Name)
		} else if other, dup := ids[id]; dup {
			t.Errorf("%s and %s share SPONSOR_INSTANCE_ID %s (one transactional id: they would fence each other)", s.Name, other, id)
		}
		ids[id] = s.Name

		// Its own named volume on the state folder.
		stateDir := env["SPONSOR_STATE_DIR"]
		if stateDir == "" {
			stateDir = "/var/lib/sponsor" // the image's ENV
		}
		var vol string
		for _, v := range s.Volumes {
			if v.Target == stateDir && v.Type == types.VolumeTypeVolume {
				vol = v.Source
			}
		}
		if vol == "" {
			t.Errorf("%s: no named volume on the state folder %s", s.Name, stateDir)
		} else if other, dup := volumes[vol]; dup {
			t.Errorf("%s and %s share the state volume %s", s.Name, other, vol)
		}
		volumes[vol] = s.Name

		if !s.ReadOnly {
			t.Errorf("%s: read_only is off; the container must run read-only except its state volume", s.Name)
		}
		if !slices.Contains(s.CapDrop, "ALL") {
			t.Errorf("%s: cap_drop %v, want ALL", s.Name, s.CapDrop)
		}
		hc := s.HealthCheck
		if hc == nil || !strings.Contains(strings.Join(hc.Test, " "), "/readyz") {
			t.Errorf("%s: want a healthcheck on /readyz, got %+v", s.Name, hc)
		} else if hc.Test[0] != "CMD" {
			t.Errorf("%s: healthcheck %v: the image has no shell, use the CMD form", s.Name, hc.Test)
		}
		for dep, want := range map[string]string{
			"kafka":           types.ServiceConditionHealthy,
			"schema-registry": types.ServiceConditionHealthy,
			"topics":          types.ServiceConditionCompletedSuccessfully,
		} {
			if d, ok := s.DependsOn[dep]; !ok || d.Condition != want {
				t.Errorf("%s: depends_on %s: %+v, want condition %s", s.Name, dep, d, want)
			}
		}
		if s.StopGracePeriod == nil || *s.StopGracePeriod < types.Duration(2*20e9) {
			t.Errorf("%s: stop_grace_period %v, want at least twice the 20s transaction timeout (see deploy/k8s)", s.Name, s.StopGracePeriod)
		}
	}

	// The topics job creates the inputs the pipeline does not create.
	topics, ok := p.Services["topics"]
	if !ok {
		t.Fatal("no topics service")
	}
	script := strings.Join(topics.Command, " ")
	for _, want := range []string{"--topic interactions", "--topic campaigns", "--bootstrap-server " + internal} {
		if !strings.Contains(script, want) {
			t.Errorf("topics: command does not contain %q: %s", want, script)
		}
	}
}

func mustAbs(t *testing.T, p string) string {
	t.Helper()
	a, err := filepath.Abs(p)
	if err != nil {
		t.Fatal(err)
	}
	return a
}
