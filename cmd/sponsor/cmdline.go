package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
)

// stdio is where a command reads and writes: os.Stdin, os.Stdout and
// os.Stderr, or buffers in tests.
type stdio struct {
	in       io.Reader
	out, err io.Writer
}

func osStdio() stdio { return stdio{os.Stdin, os.Stdout, os.Stderr} }

// exitError is an error with an exit status other than 1: a usage error
// (2), or a command whose status tells a script more than success or
// failure (explain, diff).
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }
func (e *exitError) Unwrap() error { return e.err }

// flagSet is the flag set of one invocation of a command: the command's
// run registers its flags on it, then calls parse. Its output is the
// command's stderr and its usage the command's help (command.usage, then
// the flags), so that every command answers --help, a bad flag and a stray
// argument alike.
type flagSet struct {
	*flag.FlagSet
	cmd  *command
	args []string
}

// newFlagSet returns the flag set of cmd for the arguments args (after the
// command's name), writing its usage and errors to w.
func newFlagSet(cmd *command, args []string, w io.Writer) *flagSet {
	fs := &flagSet{FlagSet: flag.NewFlagSet("sponsor "+cmd.name, flag.ContinueOnError), cmd: cmd, args: args}
	fs.SetOutput(w)
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), cmd.usage)
		fs.PrintDefaults()
	}
	return fs
}

// parse parses the arguments of fs: defaults from the --config file (if
// the command has that flag), then from SPONSOR_* variables, then the
// command line, where flags may also come after positional arguments (as
// in `sponsor produce interactions --brokers ...`; "--" ends the flags).
// It returns the positional arguments. More of them than the command takes
// (command.maxArgs) is a usage error: the usage is printed, and the exit
// status is 2.
func (fs *flagSet) parse() ([]string, error) {
	if err := parseFlags(fs.FlagSet, fs.args); err != nil {
		return nil, err
	}
	var pos []string
	for rest := fs.Args(); len(rest) > 0; rest = fs.Args() {
		if rest[0] == "--" {
			pos = append(pos, rest[1:]...)
			break
		}
		pos = append(pos, rest[0])
		if err := fs.FlagSet.Parse(rest[1:]); err != nil {
			return nil, err
		}
	}
	if max := fs.cmd.maxArgs; max >= 0 && len(pos) > max {
		fs.Usage()
		return nil, &exitError{code: 2, err: fmt.Errorf("unexpected argument %q", pos[max])}
	}
	return pos, nil
}

// parseFlags parses args into fs, after taking defaults from the --config
// file (if fs has that flag) and then from SPONSOR_* variables.
func parseFlags(fs *flag.FlagSet, args []string) error {
	if err := applyConfigFile(fs, args); err != nil {
		return err
	}
	var envErr error
	fs.VisitAll(func(fl *flag.Flag) {
		name := envName(fl.Name)
		if v, ok := os.LookupEnv(name); ok {
			if err := fl.Value.Set(v); err != nil && envErr == nil {
				envErr = fmt.Errorf("%s=%q: %w", name, v, err)
			}
		}
	})
	if envErr != nil {
		return envErr
	}
	return fs.Parse(args)
}

// envName is the environment variable that sets flag name.
func envName(name string) string {
	return "SPONSOR_" + strings.ToUpper(strings.ReplaceAll(name, "-", "_"))
}

// errUsage is returned, wrapped, for a command line that names no command
// of the table (exit status 2, after the table).
var errUsage = errors.New("usage")
