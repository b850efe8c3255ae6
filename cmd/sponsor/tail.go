package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/sponsored/sponsor/ops/tail"
)

const tailUsage = `Usage: sponsor tail inbox|deadletter|interactions|campaigns|decisions... --brokers HOST:PORT[,...] --registry URL
                   [--from start|end|TIME] [-n N] [--follow] [--values] [--topic-prefix P]

Prints the records of the given topics as JSON lines, read_committed (what
a downstream consumer sees: nothing of aborted or open transactions), with
values decoded through the schema registry:

  {"topic":"inbox","partition":3,"offset":17,"timestamp":"...","key":"user-1","value":{"delivery_id":...}}

Dead letters also show their headers and the original value bytes
("value_base64"), and the decoded value if the bytes decode. --from TIME
(RFC 3339) starts at the records written at or after TIME. Without
--follow it stops at the end of each partition as of the start; with
--values it prints only the decoded values, the input of 'sponsor produce'.

Flags (also SPONSOR_<NAME> in the environment):
`

func cmdTail(ctx context.Context, fs *flagSet, std stdio) error {
	var (
		c         clientFlags
		from      string
		cfg       tail.Config
		decisions string
	)
	c.register(fs.FlagSet)
	fs.StringVar(&from, "from", "start", "where to start: start, end, or an RFC 3339 time (records written at or after it)")
	fs.IntVar(&cfg.Limit, "n", 0, "stop after N records in all (0: no limit)")
	fs.BoolVar(&cfg.Follow, "follow", false, "keep waiting for new records (until Ctrl-C)")
	fs.BoolVar(&cfg.ValuesOnly, "values", false, "print only the decoded values (records that do not decode are reported on stderr)")
	fs.StringVar(&decisions, "decisions-topic", "decisions", "name of the decisions topic, before the prefix")
	pos, err := fs.parse()
	if err != nil {
		return err
	}
	if len(pos) == 0 {
		fs.Usage()
		return fmt.Errorf("name at least one topic: %s", strings.Join(tail.Roles, ", "))
	}
	for _, r := range pos {
		if !slices.Contains(tail.Roles, r) {
			// A stray argument, as for every command (flagSet.parse).
			fs.Usage()
			return &exitError{code: 2, err: fmt.Errorf("unknown topic %q, want some of %s", r, strings.Join(tail.Roles, ", "))}
		}
	}
	t, err := c.target()
	if err != nil {
		return err
	}
	if cfg.From, err = tail.ParseFrom(from); err != nil {
		return fmt.Errorf("--from: %w", err)
	}
	if cfg.Limit < 0 {
		return errors.New("-n: must not be negative")
	}
	cfg.Brokers, cfg.Registry, cfg.Names, cfg.Roles = t.Brokers, t.Registry, t.Topics, pos
	cfg.ClientOpts, cfg.RegistryOpts = t.ClientOpts, t.RegistryOpts
	cfg.Decisions = c.prefix + decisions
	cfg.Warn = std.err
	w := bufio.NewWriter(std.out)
	if cfg.Follow {
		// Show each record as it comes.
		_, err = tail.Run(ctx, cfg, flushWriter{w})
	} else {
		_, err = tail.Run(ctx, cfg, w)
	}
	if ferr := w.Flush(); err == nil {
		err = ferr
	}
	return securityHint(err)
}

// flushWriter flushes after every write.
type flushWriter struct{ w *bufio.Writer }

func (f flushWriter) Write(b []byte) (int, error) {
	n, err := f.w.Write(b)
	if err == nil {
		err = f.w.Flush()
	}
	return n, err
}
