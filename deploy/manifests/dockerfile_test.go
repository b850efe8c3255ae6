package manifests

import (
	"encoding/json"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// instruction is one Dockerfile instruction: its keyword (upper case),
// its flags (--from=build) and its arguments, either the words of the shell
// form or the strings of the JSON (exec) form.
type instruction struct {
	line  int
	cmd   string
	flags map[string]string
	args  []string
	json  bool   // exec form
	raw   string // the text after the keyword and flags
}

// stage is a FROM and the instructions up to the next one.
type stage struct {
	image, name string
	ins         []instruction
}

// parseDockerfile splits a Dockerfile into stages of instructions: comments
// and blank lines dropped, backslash continuations joined. It knows no
// heredocs and no parser directives other than as comments, which is all
// this project's Dockerfile uses.
func parseDockerfile(t *testing.T, text string) []stage {
	t.Helper()
	var stages []stage
	var logical []string
	var starts []int
	cur, start := "", 0
	for i, l := range strings.Split(text, "\n") {
		trimmed := strings.TrimSpace(l)
		if cur == "" && (trimmed == "" || strings.HasPrefix(trimmed, "#")) {
			continue
		}
		if cur != "" && strings.HasPrefix(trimmed, "#") {
			continue // a comment inside a continued instruction
		}
		if cur == "" {
			start = i + 1
		}
		if body, ok := strings.CutSuffix(trimmed, "\\"); ok {
			cur += body + " "
			continue
		}
		logical = append(logical, cur+trimmed)
		starts = append(starts, start)
		cur = ""
	}
	if cur != "" {
		t.Fatalf("Dockerfile ends inside a continued line")
	}
	for i, l := range logical {
		kw, rest, _ := strings.Cut(l, " ")
		in := instruction{line: starts[i], cmd: strings.ToUpper(kw), flags: map[string]string{}}
		rest = strings.TrimSpace(rest)
		for strings.HasPrefix(rest, "--") {
			var f string
			f, rest, _ = strings.Cut(rest, " ")
			k, v, _ := strings.Cut(strings.TrimPrefix(f, "--"), "=")
			in.flags[k] = v
			rest = strings.TrimSpace(rest)
		}
		in.raw = rest
		if strings.HasPrefix(rest, "[") {
			if err := json.Unmarshal([]byte(rest), &in.args); err != nil {
				t.Fatalf("Dockerfile line %d: %s: bad JSON form %q: %v", in.line, in.cmd, rest, err)
			}
			in.json = true
		} else {
			in.args = strings.Fields(rest)
		}
		if in.cmd == "FROM" {
			st := stage{image: in.args[0]}
			if len(in.args) == 3 && strings.EqualFold(in.args[1], "AS") {
				st.name = in.args[2]
			} else if len(in.args) != 1 {
				t.Fatalf("Dockerfile line %d: FROM %q: want IMAGE [AS NAME]", in.line, rest)
			}
			stages = append(stages, st)
			continue
		}
		if len(stages) == 0 {
			if in.cmd != "ARG" {
				t.Fatalf("Dockerfile line %d: %s before the first FROM", in.line, in.cmd)
			}
			continue
		}
		s := &stages[len(stages)-1]
		s.ins = append(s.ins, in)
	}
	return stages
}

func (s stage) all(cmd string) []instruction {
	var out []instruction
	for _, in := range s.ins {
		if in.cmd == cmd {
			out = append(out, in)
		}
	}
	return out
}

// last returns the stage's last instruction cmd, which is the one in force
// for USER, ENTRYPOINT and CMD.
func (s stage) last(t *testing.T, cmd string) instruction {
	t.Helper()
	all := s.all(cmd)
	if len(all) == 0 {
		t.Fatalf("final stage (FROM %s) has no %s", s.image, cmd)
	}
	return all[len(all)-1]
}

// env returns the stage's ENV settings (KEY=VALUE form only).
func (s stage) env(t *testing.T) map[string]string {
	t.Helper()
	env := map[string]string{}
	for _, in := range s.all("ENV") {
		for _, kv := range in.args {
			k, v, ok := strings.Cut(kv, "=")
			if !ok {
				t.Fatalf("Dockerfile line %d: ENV %q: use the KEY=VALUE form", in.line, in.raw)
			}
			env[k] = strings.Trim(v, `"`)
		}
	}
	return env
}

func readFile(t *testing.T, rel string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(root, rel))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestDockerfile(t *testing.T) {
	stages := parseDockerfile(t, string(readFile(t, "Dockerfile")))
	if len(stages) < 2 {
		t.Fatalf("want a multi-stage build, got %d stage(s)", len(stages))
	}
	names := map[string]bool{}
	for _, s := range stages {
		if s.name != "" {
			names[s.name] = true
		}
	}

	// The builder: Go 1.26, a static binary of ./cmd/sponsor.
	build := stages[0]
	if !strings.HasPrefix(build.image, "golang:1.26") {
		t.Errorf("first stage: FROM %s, want golang:1.26", build.image)
	}
	var built string
	for _, in := range build.all("RUN") {
		if strings.Contains(in.raw, "go build") && strings.Contains(in.raw, "./cmd/sponsor") {
			if !strings.Contains(in.raw, "CGO_ENABLED=0") {
				t.Errorf("line %d: go build without CGO_ENABLED=0: the final image has no libc", in.line)
			}
			for i, a := range in.args {
				if a == "-o" && i+1 < len(in.args) {
					built = in.args[i+1]
				}
			}
		}
	}
	if built == "" {
		t.Fatalf("the first stage has no `RUN ... go build -o PATH ./cmd/sponsor`")
	}

	final := stages[len(stages)-1]
	if !regexp.MustCompile(`^(gcr\.io/distroless/static(-debian\d+)?:nonroot|scratch)$`).MatchString(final.image) {
		t.Errorf("final stage: FROM %s, want gcr.io/distroless/static...:nonroot or scratch", final.image)
	}
	// No shell in the final image: a RUN there would need one.
	for _, in := range final.all("RUN") {
		t.Errorf("final stage line %d: RUN %s: the final image has no shell", in.line, in.raw)
	}
	for _, cmd := range []string{"ADD", "HEALTHCHECK", "ONBUILD"} {
		for _, in := range final.all(cmd) {
			if cmd != "HEALTHCHECK" || !in.json {
				t.Errorf("final stage line %d: %s %s: not wanted (ADD fetches; a shell-form healthcheck needs a shell)", in.line, cmd, in.raw)
			}
		}
	}

	// The binary comes from the builder, at /sponsor.
	var binary bool
	for _, in := range final.all("COPY") {
		from := in.flags["from"]
		if from == "" {
			t.Errorf("final stage line %d: COPY from the build context; copy from a stage instead", in.line)
			continue
		}
		if !names[from] && !strings.Contains(from, ":") {
			t.Errorf("final stage line %d: COPY --from=%s: no such stage", in.line, from)
		}
		if from == build.name && len(in.args) == 2 && in.args[0] == built && in.args[1] == "/sponsor" {
			binary = true
		}
	}
	if !binary {
		t.Errorf("final stage: want COPY --from=%s %s /sponsor", build.name, built)
	}

	// A numeric non-root user, so Kubernetes' runAsNonRoot can check it.
	user := final.last(t, "USER")
	uid, _, _ := strings.Cut(user.raw, ":")
	if !regexp.MustCompile(`^[0-9]+$`).MatchString(uid) || uid == "0" {
		t.Errorf("final stage: USER %s, want a numeric non-root uid", user.raw)
	}

	ep, cmd := final.last(t, "ENTRYPOINT"), final.last(t, "CMD")
	if !ep.json || len(ep.args) != 1 || ep.args[0] != "/sponsor" {
		t.Errorf(`ENTRYPOINT %s, want ["/sponsor"] (exec form: no shell, SIGTERM reaches the pipeline)`, ep.raw)
	}
	if !cmd.json || len(cmd.args) != 1 || cmd.args[0] != "run" {
		t.Errorf(`CMD %s, want ["run"]`, cmd.raw)
	}

	// The state folder is the volume, the HTTP endpoint listens on the
	// exposed port on every interface.
	env := final.env(t)
	var envNames []string
	for k := range env {
		envNames = append(envNames, k)
	}
	checkEnv(t, "Dockerfile ENV", envNames)
	vol := final.last(t, "VOLUME")
	if stateDir := env["SPONSOR_STATE_DIR"]; stateDir == "" || !contains(vol.args, stateDir) {
		t.Errorf("ENV SPONSOR_STATE_DIR=%q, VOLUME %v: the state folder must be the volume (the rest of the file system may be read-only)", stateDir, vol.args)
	}
	expose := final.last(t, "EXPOSE")
	if !contains(expose.args, "8080") && !contains(expose.args, "8080/tcp") {
		t.Errorf("EXPOSE %s, want 8080", expose.raw)
	}
	if env["SPONSOR_HTTP"] != "0.0.0.0:8080" {
		t.Errorf("ENV SPONSOR_HTTP=%q, want 0.0.0.0:8080 (the default 127.0.0.1 is unreachable from outside a container)", env["SPONSOR_HTTP"])
	}
	// The state folder is created owned by the user, so a new named volume
	// on it is writable.
	var owned bool
	for _, in := range final.all("COPY") {
		if len(in.args) == 2 && in.args[1] == env["SPONSOR_STATE_DIR"] && in.flags["chown"] == user.raw {
			owned = true
		}
	}
	if !owned {
		t.Errorf("final stage: want COPY --chown=%s ... %s, so the state volume is writable by the user", user.raw, env["SPONSOR_STATE_DIR"])
	}
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

// TestDockerignoreKeepsBuildInputs checks that .dockerignore leaves every
// file `go build ./cmd/sponsor` reads in the build context: go.mod, go.sum,
// and the Go and embedded files of every package of this module it builds.
func TestDockerignoreKeepsBuildInputs(t *testing.T) {
	var ignore []*regexp.Regexp
	for _, l := range strings.Split(string(readFile(t, ".dockerignore")), "\n") {
		l = strings.TrimSpace(l)
		if l == "" || strings.HasPrefix(l, "#") {
			continue
		}
		if strings.HasPrefix(l, "!") {
			t.Fatalf(".dockerignore: exceptions (%s) are not understood by this test", l)
		}
		ignore = append(ignore, ignorePattern(l))
	}
	cmd := exec.Command("go", "list", "-deps",
		"-f", `{{if .Module}}{{if eq .Module.Path "github.com/sponsored/sponsor"}}{{.Dir}}|{{join .GoFiles ","}}|{{join .EmbedFiles ","}}{{end}}{{end}}`,
		"./cmd/sponsor")
	cmd.Dir = root
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	abs, err := filepath.Abs(root)
	if err != nil {
		t.Fatal(err)
	}
	need := []string{"go.mod", "go.sum"}
	for _, l := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		dir, files, _ := strings.Cut(l, "|")
		rel, err := filepath.Rel(abs, dir)
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range strings.FieldsFunc(files, func(r rune) bool { return r == ',' || r == '|' }) {
			need = append(need, path.Join(filepath.ToSlash(rel), f))
		}
	}
	if len(need) < 10 {
		t.Fatalf("go list found only %v", need)
	}
	for _, f := range need {
		for _, re := range ignore {
			if ignoredBy(re, f) {
				t.Errorf(".dockerignore pattern %s excludes %s, which the build needs", re, f)
			}
		}
	}
	// And it does keep out what only bloats the context.
	for _, f := range []string{".git/HEAD", "bin/sponsor", "data/x", "pipeline/runner_test.go"} {
		var hit bool
		for _, re := range ignore {
			hit = hit || ignoredBy(re, f)
		}
		if !hit {
			t.Errorf(".dockerignore keeps %s in the build context", f)
		}
	}
}

// ignorePattern turns a .dockerignore line into a regexp over
// slash-separated paths relative to the context: ** any depth, * and ?
// within one segment, a trailing slash ignored.
func ignorePattern(p string) *regexp.Regexp {
	p = strings.TrimPrefix(strings.TrimSuffix(p, "/"), "/")
	var b strings.Builder
	b.WriteString("^")
	for i := 0; i < len(p); i++ {
		switch {
		case strings.HasPrefix(p[i:], "**/"):
			b.WriteString("(.*/)?")
			i += 2
		case strings.HasPrefix(p[i:], "**"):
			b.WriteString(".*")
			i++
		case p[i] == '*':
			b.WriteString("[^/]*")
		case p[i] == '?':
			b.WriteString("[^/]")
		default:
			b.WriteString(regexp.QuoteMeta(p[i : i+1]))
		}
	}
	b.WriteString("$")
	return regexp.MustCompile(b.String())
}

// ignoredBy reports whether re matches f or one of its parent folders
// (ignoring a folder ignores what is in it).
func ignoredBy(re *regexp.Regexp, f string) bool {
	for p := f; p != "." && p != "/" && p != ""; p = path.Dir(p) {
		if re.MatchString(p) {
			return true
		}
	}
	return false
}
