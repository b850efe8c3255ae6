package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/sponsored/sponsor/ops/txn"
)

const txnUsage = `Usage: sponsor txn list  --brokers HOST:PORT[,...] [--topic-prefix P] [--group NAME]
       sponsor txn abort --brokers HOST:PORT[,...] --topic T --partition P [--producer-id ID] [--yes]

A Kafka transaction left open holds the last stable offset (LSO) of every
partition it wrote to at its first record: no read_committed reader (the
pipeline, the inbox consumers) reads past it, and a lag computed from the
LSO shows nothing (sponsor_lso_stuck_seconds and sponsor_lso_behind_hwm_records
do). The coordinator aborts a transaction that outlives its timeout; these
commands are for one it does not end.

list   the transactions open on the pipeline's topics (interactions,
       campaigns, inbox, deadletter, the group's changelog, decisions), from
       the partition leaders (DescribeProducers) and the transaction
       coordinators (ListTransactions, DescribeTransactions): producer id and
       epoch, transactional id when known, the first offset, how long open,
       and whether it holds the partition's LSO. Writes nothing.
abort  shows the transaction holding --topic/--partition (the oldest open
       there, or that of --producer-id) and, with --yes only, writes its
       abort marker to that partition, as kafka-transactions.sh abort does:
       its records there are discarded for read_committed readers and the
       LSO moves on. Abort only a stuck transaction: a live producer fails
       its next write or commit of it. A pipeline instance's own transaction
       ends at once when the instance restarts with the same identity.

Flags (also SPONSOR_<NAME> in the environment):
`

// cmdTxn implements `sponsor txn list` and `sponsor txn abort`.
func cmdTxn(ctx context.Context, fs *flagSet, std stdio) error {
	_, sub, _ := strings.Cut(fs.cmd.name, " ")
	var (
		c         clientFlags
		topic     string
		partition int
		pid       int64
		yes       bool
	)
	c.register(fs.FlagSet)
	c.registerRun(fs.FlagSet, "consumer group of the pipeline (names its changelog topic)", "")
	if sub == "abort" {
		fs.StringVar(&topic, "topic", "", "topic of the partition held (required)")
		fs.IntVar(&partition, "partition", -1, "partition held (required)")
		fs.Int64Var(&pid, "producer-id", -1, "abort the transaction of this producer id (default: the one holding the partition's LSO)")
		fs.BoolVar(&yes, "yes", false, "write the abort marker (without it: show the plan, write nothing)")
	}
	if _, err := fs.parse(); err != nil {
		return err
	}
	if sub == "abort" && (topic == "" || partition < 0) {
		return errors.New("--topic and --partition are required")
	}
	opts, err := c.clientOpts()
	if err != nil {
		return err
	}
	adm, err := newAdmin(opts)
	if err != nil {
		return err
	}
	defer adm.Close()
	now := time.Now()

	if sub == "list" {
		run, err := c.run()
		if err != nil {
			return err
		}
		n := run.Names()
		watched := []string{n.Interactions, n.Campaigns, n.Inbox, n.DeadLetter, n.Changelog, n.Decisions}
		l, err := txn.List(ctx, adm, watched...)
		if err != nil {
			return securityHint(err)
		}
		printOpen(std.out, l, now)
		return nil
	}

	o, err := txn.Holding(ctx, adm, topic, int32(partition), pid)
	if err != nil {
		return securityHint(err)
	}
	fmt.Fprintf(std.out, "Transaction to abort on %s/%d:\n\n", topic, partition)
	printOpen(std.out, &txn.Listing{Open: []txn.Open{o}, Partitions: 1}, now)
	fmt.Fprintf(std.out, "\nPlan: write an abort marker for producer id %d, epoch %d (coordinator epoch %d) to %s/%d, to the partition's leader (broker %d).\n"+
		"The records this producer wrote there from offset %d on are discarded for read_committed readers (other producers' records stay);\n"+
		"the LSO moves from %d past them. The transaction's other partitions, if any, are not touched.\n",
		o.ProducerID, o.ProducerEpoch, max(o.CoordinatorEpoch, 0), topic, partition, o.Leader, o.StartOffset, o.LSO)
	if !yes {
		fmt.Fprintln(std.out, "Nothing was written. Run again with --yes to abort it.")
		return nil
	}
	res, err := txn.Abort(ctx, adm, o)
	if err != nil {
		return securityHint(err)
	}
	fmt.Fprintf(std.out, "Aborted: the last stable offset of %s/%d moved from %d to %d (high watermark %d).\n", topic, partition, res.Before, res.After, res.HWM)
	if len(res.Remaining) > 0 {
		fmt.Fprintf(std.out, "Still open on the partition:\n\n")
		printOpen(std.out, &txn.Listing{Open: res.Remaining, Partitions: 1}, now)
	}
	return nil
}

// printOpen writes the open transactions as a table, then the notes.
func printOpen(w io.Writer, l *txn.Listing, now time.Time) {
	if len(l.Open) == 0 {
		fmt.Fprintf(w, "No open transaction on %d partition%s.\n", l.Partitions, plural(int64(l.Partitions)))
	} else {
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "TOPIC\tPARTITION\tPRODUCER ID\tEPOCH\tTRANSACTIONAL ID\tSTATE\tSTART OFFSET\tLSO\tHWM\tHOLDS LSO\tOPEN FOR\tTIMEOUT\t")
		for _, o := range l.Open {
			id, state, timeout := o.TransactionalID, o.State, "?"
			if id == "" {
				id = "?"
			}
			if state == "" {
				state = "?"
			}
			if o.Timeout > 0 {
				timeout = o.Timeout.String()
			}
			age, known := o.Age(now)
			open := age.Round(time.Second).String()
			if !known {
				open = ">= " + open + " (last write)"
			}
			holds := "no"
			if o.HoldsLSO() {
				holds = "yes"
			}
			fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%s\t%s\t%d\t%d\t%d\t%s\t%s\t%s\t\n",
				o.Topic, o.Partition, o.ProducerID, o.ProducerEpoch, id, state, o.StartOffset, o.LSO, o.HWM, holds, open, timeout)
		}
		tw.Flush()
		var holding int
		for _, o := range l.Open {
			if o.HoldsLSO() {
				holding++
			}
		}
		if l.Partitions > 1 {
			verb := "hold"
			if holding == 1 {
				verb = "holds"
			}
			fmt.Fprintf(w, "\n%d open transaction%s on %d partitions; %d %s a partition's last stable offset.\n",
				len(l.Open), plural(int64(len(l.Open))), l.Partitions, holding, verb)
		}
	}
	for _, n := range l.Notes {
		fmt.Fprintf(w, "note: %s\n", n)
	}
}
