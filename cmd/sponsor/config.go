package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
)

// cmdConfig implements `sponsor config print [run flags]`: the effective
// configuration of `sponsor run`, each setting with where it came from (flag,
// SPONSOR_* variable, the --config file, or default), and every secret
// redacted.
func cmdConfig(args []string, out io.Writer) error {
	if len(args) == 0 || args[0] != "print" {
		return errors.New("usage: sponsor config print [run flags]")
	}
	fs, f, err := runFlags("sponsor config print", args[1:])
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
		} else if file := fromFile(fs, fl.Name); file != "" {
			source = "file " + file
		}
		v := fl.Value.String()
		if secretFlag(fl.Name) && v != "" {
			v = "[REDACTED]"
		}
		fmt.Fprintf(out, "%-24s %-32q # %s\n", fl.Name, v, source)
	})
	if problems != nil {
		return fmt.Errorf("the configuration is not valid: %w", problems)
	}
	return nil
}

// envName is the environment variable that sets flag name.
func envName(name string) string {
	return "SPONSOR_" + strings.ToUpper(strings.ReplaceAll(name, "-", "_"))
}

// secretFlag reports whether a flag holds a secret itself (not a file name).
func secretFlag(name string) bool {
	return (strings.Contains(name, "password") || strings.Contains(name, "token")) && !strings.HasSuffix(name, "-file")
}
