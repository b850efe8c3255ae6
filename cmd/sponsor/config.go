package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"reflect"
	"regexp"
	"strings"

	"github.com/sponsored/sponsor/pipeline"
)

const configUsage = `Usage: sponsor config print --brokers HOST:PORT[,...] --registry URL --state-dir DIR [flags]

Shows the effective configuration of 'sponsor run' with these flags: each
setting with where it came from (flag, SPONSOR_* variable, the --config
file, or default), every secret redacted; then whether it is valid.

Flags (also SPONSOR_<NAME> in the environment):
`

// cmdConfig implements `sponsor config print [run flags]`: the effective
// configuration of `sponsor run`, each setting with where it came from (flag,
// SPONSOR_* variable, the --config file, or default), and every secret
// redacted.
func cmdConfig(_ context.Context, fs *flagSet, std stdio) error {
	out := std.out
	f, err := parseRunFlags(fs)
	if err != nil {
		return err
	}
	fromFlag := map[string]bool{}
	fs.Visit(func(fl *flag.Flag) { fromFlag[fl.Name] = true })
	var problems error
	if _, err := f.finish(); err != nil {
		problems = err
	} else {
		cfg := f.cfg
		cfg.EnsureDefaults()
		problems = cfg.Validate()
	}
	fs.VisitAll(func(fl *flag.Flag) {
		source := "default"
		if fromFlag[fl.Name] {
			source = "flag"
		} else if _, ok := os.LookupEnv(envName(fl.Name)); ok {
			source = "env " + envName(fl.Name)
		} else if file := fromFile(fs.FlagSet, fl.Name); file != "" {
			source = "file " + file
		}
		v := fl.Value.String()
		if secretFlag(fl.Name) && v != "" {
			v = "[REDACTED]"
		}
		fmt.Fprintf(out, "%-24s %-32q # %s\n", fl.Name, v, source)
	})
	if problems != nil {
		return fmt.Errorf("the configuration is not valid: %w", flagNames(fs.FlagSet, &f.cfg, problems))
	}
	return nil
}

// secretFlag reports whether a flag holds a secret itself (not a file name).
func secretFlag(name string) bool {
	return (strings.Contains(name, "password") || strings.Contains(name, "token")) && !strings.HasSuffix(name, "-file")
}

// flagFields are the fields of pipeline.Config set from a flag through a
// variable of its own (see pipelineFlags.finish), which flagNames cannot
// find by address.
var flagFields = map[string]string{
	"Brokers":          "brokers",
	"Partitions":       "partitions",
	"ContactRetention": "contact-retention",
	"UserCap":          "user-cap",
	"ConversationGap":  "conversation-gap",
}

var fieldName = regexp.MustCompile(`\b(?:Security\.)?[A-Z][A-Za-z]+\b`)

// flagNames rewrites the Go field names of cfg (pipeline.Config, whose
// Validate names its fields) in err into the flags of fs that set them:
// "Security.SASLUser" reads "--sasl-user", the name a user of run, dev or
// config print can type (or write as a key of the --config file). A flag
// that sets a field directly is found by the field's address.
func flagNames(fs *flag.FlagSet, cfg *pipeline.Config, err error) error {
	if err == nil {
		return nil
	}
	byAddr := map[uintptr]string{}
	var walk func(v reflect.Value, path string)
	walk = func(v reflect.Value, path string) {
		for i := range v.NumField() {
			sf := v.Type().Field(i)
			if !sf.IsExported() {
				continue
			}
			f := v.Field(i)
			// Nested settings of our own (Security, from kafkaconn) are
			// walked; a library's struct (time.Duration is not one) is not.
			if f.Kind() == reflect.Struct && strings.HasPrefix(f.Type().PkgPath(), "github.com/sponsored/sponsor/") {
				walk(f, path+sf.Name+".")
				continue
			}
			byAddr[f.Addr().Pointer()] = path + sf.Name
		}
	}
	walk(reflect.ValueOf(cfg).Elem(), "")
	names := map[string]string{} // Go field (with and without "Security.") -> --flag
	for field, fl := range flagFields {
		names[field] = "--" + fl
	}
	fs.VisitAll(func(fl *flag.Flag) {
		v := reflect.ValueOf(fl.Value)
		if v.Kind() != reflect.Pointer {
			return
		}
		if path, ok := byAddr[v.Pointer()]; ok {
			names[path] = "--" + fl.Name
			// A list such as "Security.SASLUser, SASLPassword" names the
			// later fields without their prefix.
			names[strings.TrimPrefix(path, "Security.")] = "--" + fl.Name
		}
	})
	var lines []string
	for _, line := range strings.Split(err.Error(), "\n") {
		line = fieldName.ReplaceAllStringFunc(line, func(w string) string {
			if fl, ok := names[w]; ok && w != "TLS" { // "TLS" is also the word
				return fl
			}
			return w
		})
		// "--brokers: ... required (--brokers)": the hint is the name now.
		if name, _, ok := strings.Cut(line, ":"); ok && strings.HasPrefix(name, "--") && !strings.Contains(name, " ") {
			line = strings.Replace(line, " ("+name+")", "", 1)
		}
		lines = append(lines, line)
	}
	return &renamedError{msg: strings.Join(lines, "\n"), err: err}
}

// renamedError is err with the flag names in its text (flagNames).
type renamedError struct {
	msg string
	err error
}

func (e *renamedError) Error() string { return e.msg }
func (e *renamedError) Unwrap() error { return e.err }
