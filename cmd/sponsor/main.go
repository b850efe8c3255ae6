// Command sponsor runs the sponsored-messages pipeline, and the tools to
// feed, inspect and repair it.
//
//	sponsor run --brokers HOST:PORT[,...] --registry URL --state-dir DIR [--group NAME] [--http ADDR]
//	sponsor dev [--demo | --no-pipeline] [--data DIR]
//	sponsor produce interactions|campaigns --brokers ... --registry URL [FILE|-]
//	sponsor gen --brokers ... --registry URL --count N | --rate R [--duration D]
//	sponsor schemas check FILE.avsc [--against interactions|campaigns]
//	sponsor tail inbox|deadletter|interactions|campaigns|decisions... --brokers ... --registry URL
//	sponsor deadletter redrive --brokers ... [--source S] [--reason R] [--since T] [--shadow NAME] [--yes]
//	sponsor state get --user U [--business B] (--state-dir DIR | --from http://HOST:PORT)
//	sponsor state rebuild --brokers ... --state-dir DIR [--group G] [--shadow NAME] [--partitions 0,1,...]
//	sponsor report --campaign C --brokers ... --registry URL [--inbox]
//	sponsor explain --campaign C --user U --brokers ... --registry URL
//	sponsor replay --brokers ... (--to-start | --to-time T | --by D) [--shadow NAME] [--yes]
//	sponsor diff --shadow NAME --brokers ... --registry URL
//	sponsor txn list --brokers ... | sponsor txn abort --brokers ... --topic T --partition P [--yes]
//	sponsor config print [run flags]
//
// Every flag can also be set as SPONSOR_<FLAG> in the environment (dashes
// become underscores: --state-dir is SPONSOR_STATE_DIR), and those of run
// and dev in a YAML file named by --config or SPONSOR_CONFIG (keys are the
// flag names). A flag on the command line wins, then the environment, then
// the file.
//
// This package only parses flags and wires packages together: the command
// table is in commands.go, one file per command, the flags several
// commands share in sharedflags.go (the connection flags of the tools in
// clientflags.go and security.go, those of run and dev in
// pipelineflags.go).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	err := dispatch(ctx, os.Args[1:], osStdio())
	if err == nil || errors.Is(err, flag.ErrHelp) {
		return
	}
	if !errors.Is(err, errUsage) {
		fmt.Fprintf(os.Stderr, "sponsor %s: %v\n", os.Args[1], err)
	}
	code := 1
	if ee, ok := errors.AsType[*exitError](err); ok {
		code = ee.code
	}
	stop()
	os.Exit(code)
}
