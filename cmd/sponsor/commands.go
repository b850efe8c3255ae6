package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"strings"
)

// A command is one entry of the command table: `sponsor NAME ...`.
type command struct {
	// name is what follows "sponsor" on the command line: one word ("run"),
	// or two for a command of a group ("state rebuild").
	name string
	// synopsis follows the name in the table: the arguments and the main
	// flags.
	synopsis string
	// summary says in one line what the command does, for the table.
	summary string
	// usage is the command's help, printed before its flags on --help, a
	// bad flag or a stray argument.
	usage string
	// maxArgs is how many positional arguments the command takes at most;
	// -1 is any number. Another one is a usage error (flagSet.parse).
	maxArgs int
	// run registers the command's flags on fs, parses it (fs.parse) and
	// does the work.
	run func(ctx context.Context, fs *flagSet, std stdio) error
}

// commands is the command table: every command of sponsor, in the order
// `sponsor help` lists them.
var commands = []*command{
	{name: "run", synopsis: "--brokers HOST:PORT[,...] --registry URL --state-dir DIR [--group NAME] [--http ADDR]",
		summary: "run the pipeline against an existing Kafka cluster (SIGTERM: stop for a restart; SIGUSR1: stop and leave the group)",
		usage:   runUsage, maxArgs: 0, run: cmdRun},
	{name: "dev", synopsis: "[--demo | --no-pipeline] [--data DIR]",
		summary: "start an in-process Kafka and schema registry, the topics and the pipeline (--demo: with a live workload)",
		usage:   devUsage, maxArgs: 0, run: cmdDev},
	{name: "produce", synopsis: "interactions|campaigns [FILE|-]",
		summary: "write JSON lines as records, all or nothing, in one transaction",
		usage:   produceUsage, maxArgs: 2, run: cmdProduce},
	{name: "gen", synopsis: "--count N | --rate R [--duration D]",
		summary: "write a synthetic workload, with progress and ETA",
		usage:   genUsage, maxArgs: 0, run: cmdGen},
	{name: "schemas check", synopsis: "FILE.avsc [--against interactions|campaigns]",
		summary: "tell whether a new input schema version is compatible",
		usage:   schemasUsage, maxArgs: 1, run: cmdSchemas},
	{name: "tail", synopsis: "inbox|deadletter|interactions|campaigns|decisions...",
		summary: "print decoded records as JSON lines, read_committed",
		usage:   tailUsage, maxArgs: -1, run: cmdTail},
	{name: "deadletter redrive", synopsis: "[--source S] [--reason R] [--since T] [--group G] [--shadow NAME] [--yes]",
		summary: "send dead letters back to their source topic once the cause is fixed, each at most once",
		usage:   redriveUsage, maxArgs: 0, run: cmdDeadletter},
	{name: "report", synopsis: "--campaign C [--inbox]",
		summary: "a campaign's decisions: delivered and suppressed by reason, per partition and in all",
		usage:   reportUsage, maxArgs: 0, run: cmdReport},
	{name: "explain", synopsis: "--campaign C --user U",
		summary: "whether U got C and which rule decided (exit 0 decided, 3 no such campaign, 4 no decision)",
		usage:   explainUsage, maxArgs: 0, run: cmdExplain},
	{name: "replay", synopsis: "(--to-start | --to-time T | --by D) [--shadow NAME] [--yes]",
		summary: "move the group's offsets back, after showing the plan; with --shadow, for a shadow run",
		usage:   replayUsage, maxArgs: 0, run: cmdReplay},
	{name: "diff", synopsis: "--shadow NAME",
		summary: "compare the shadow run's inbox and decisions with the real ones",
		usage:   diffUsage, maxArgs: 0, run: cmdDiff},
	{name: "txn list", synopsis: "[--group G]",
		summary: "the transactions open on the pipeline's topics, and which holds a partition's last stable offset",
		usage:   txnUsage, maxArgs: 0, run: cmdTxn},
	{name: "txn abort", synopsis: "--topic T --partition P [--producer-id ID] [--yes]",
		summary: "abort the transaction holding a partition, as kafka-transactions.sh abort does",
		usage:   txnUsage, maxArgs: 0, run: cmdTxn},
	{name: "config print", synopsis: "[run flags]",
		summary: "show the effective configuration of 'sponsor run', each setting's source, secrets redacted",
		usage:   configUsage, maxArgs: 0, run: cmdConfig},
	{name: "state get", synopsis: "--user U [--business B] (--state-dir DIR | --from http://HOST:PORT)",
		summary: "print as JSON what the state knows about a user, from a folder or a running instance",
		usage:   stateGetUsage, maxArgs: 0, run: cmdStateGet},
	{name: "state rebuild", synopsis: "--state-dir DIR [--group G] [--shadow NAME] [--partitions 0,1,...]",
		summary: "rebuild a state folder from the changelog topic of the group (or of its shadow run)",
		usage:   stateRebuildUsage, maxArgs: 0, run: cmdStateRebuild},
}

const tableIntro = `sponsor: the sponsored-messages stream processor.

It reads the interactions and campaigns topics, keeps per-user state in
Pebble, and writes each deliverable sponsored message to the inbox topic
exactly once, under the platform's rules (contact first, at most one message
per business per 24 hours, the advertiser's audience, never to people who
blocked or opted out).

Commands (the tools take --brokers, --registry, --topic-prefix and the
security flags of run: --tls*, --sasl-*, --registry-user, --registry-token...):
`

const tableOutro = `
Run 'sponsor COMMAND --help' for the flags. Every flag
can also be set in the environment as SPONSOR_<NAME> (--state-dir is
SPONSOR_STATE_DIR). run, dev and config print also read a YAML file given
as --config FILE (or SPONSOR_CONFIG), whose keys are the flag names
(state-dir: /var/lib/sponsor); unknown keys and values of the wrong type
are errors. The command line wins, then the environment, then the file.
`

// printTable writes the command table: the commands whose name starts with
// group ("" for all), each with its synopsis and summary.
func printTable(w io.Writer, group string) {
	if group == "" {
		fmt.Fprint(w, tableIntro)
	} else {
		fmt.Fprintf(w, "Commands of sponsor %s:\n", group)
	}
	for _, c := range commands {
		if group != "" && !strings.HasPrefix(c.name, group+" ") {
			continue
		}
		fmt.Fprintf(w, "  sponsor %s %s\n      %s\n", c.name, c.synopsis, c.summary)
	}
	if group == "" {
		fmt.Fprint(w, tableOutro)
	}
}

// lookup finds the command that args (the words after "sponsor") name, and
// returns it with the arguments that follow its name. A word that is only
// the first of two-word commands (group, "state") is returned as group
// with cmd nil; a word that names nothing gives neither.
func lookup(args []string) (cmd *command, rest []string, group string) {
	if len(args) == 0 {
		return nil, nil, ""
	}
	for _, c := range commands {
		first, second, two := strings.Cut(c.name, " ")
		switch {
		case !two && c.name == args[0]:
			return c, args[1:], ""
		case two && first == args[0]:
			group = first
			if len(args) > 1 && args[1] == second {
				return c, args[2:], ""
			}
		}
	}
	return nil, nil, group
}

// dispatch runs the command that args (the words after "sponsor") name.
// help, -h and --help print the table to std.out; no command, or one the
// table does not have, print it to std.err and give exit status 2, and a
// group without one of its commands ("sponsor state") prints the group's
// commands and fails.
func dispatch(ctx context.Context, args []string, std stdio) error {
	if len(args) > 0 && (args[0] == "help" || args[0] == "-h" || args[0] == "--help") {
		printTable(std.out, "")
		return nil
	}
	cmd, rest, group := lookup(args)
	switch {
	case cmd != nil:
		return cmd.run(ctx, newFlagSet(cmd, rest, std.err), std)
	case len(args) == 0:
		printTable(std.err, "")
		return &exitError{code: 2, err: fmt.Errorf("%w: no command given", errUsage)}
	case group == "":
		fmt.Fprintf(std.err, "sponsor: unknown command %q\n\n", args[0])
		printTable(std.err, "")
		return &exitError{code: 2, err: fmt.Errorf("%w: unknown command %q", errUsage, args[0])}
	}
	printTable(std.err, group)
	var subs []string
	for _, c := range commands {
		if first, second, _ := strings.Cut(c.name, " "); first == group {
			subs = append(subs, second)
		}
	}
	want := strings.Join(subs, " or ")
	switch {
	case len(args) == 1:
		return fmt.Errorf("want %s", want)
	case args[1] == "-h" || args[1] == "--help" || args[1] == "help":
		return flag.ErrHelp
	}
	return fmt.Errorf("unknown %s command %q, want %s", group, args[1], want)
}
