package main

import (
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/sponsored/sponsor/loadgen"
	"github.com/sponsored/sponsor/ops/redrive"
)

// isTerminal reports whether w is a character device (a terminal).
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}

// progress shows a long task's progress: a line redrawn in place with a bar,
// rate and ETA on a terminal, plain log lines otherwise.
type progress struct {
	w   io.Writer
	tty bool
	log *slog.Logger
}

func newProgress(w io.Writer, tty bool) *progress {
	return &progress{w: w, tty: tty, log: slog.New(slog.NewTextHandler(w, nil))}
}

// progressCount is one counter of a progressStatus.
type progressCount struct {
	name string
	n    int64
}

// progressStatus is one report of a task's progress.
type progressStatus struct {
	// task names the task in log lines: "<task> progress", "<task> done".
	task string
	// counts are the counters; Total counts the same thing as the first.
	counts  []progressCount
	total   int64 // 0: unknown
	elapsed time.Duration
	rate    float64       // of the first counter, per second
	eta     time.Duration // negative: unknown
	done    bool          // the last report
}

// report shows the progress of `sponsor gen`.
func (p *progress) report(st loadgen.Progress) {
	p.show(progressStatus{
		task:    "gen",
		counts:  []progressCount{{"interactions", st.Interactions}, {"campaigns", st.Campaigns}},
		total:   st.Total,
		elapsed: st.Elapsed, rate: st.Rate, eta: st.ETA, done: st.Done,
	})
}

// redrive shows the progress of `sponsor deadletter redrive`.
func (p *progress) redrive(st redrive.Progress) {
	p.show(progressStatus{
		task:    "redrive",
		counts:  []progressCount{{"records", st.Sent}},
		total:   st.Total,
		elapsed: st.Elapsed, rate: st.Rate, eta: st.ETA, done: st.Done,
	})
}

// show writes one report.
func (p *progress) show(st progressStatus) {
	eta := etaText(st.eta)
	if !p.tty {
		var args []any
		for _, c := range st.counts {
			args = append(args, c.name, c.n)
		}
		args = append(args, "rate", fmt.Sprintf("%.0f/s", st.rate), "elapsed", st.elapsed.Round(time.Second))
		if st.total > 0 {
			args = append(args, "total", st.total)
		}
		if !st.done {
			args = append(args, "eta", eta)
		}
		msg := st.task + " progress"
		if st.done {
			msg = st.task + " done"
		}
		p.log.Info(msg, args...)
		return
	}
	var line string
	first := st.counts[0]
	if st.total > 0 {
		line = fmt.Sprintf("%s %d/%d %s", bar(first.n, st.total), first.n, st.total, first.name)
	} else {
		line = fmt.Sprintf("%d %s", first.n, first.name)
	}
	for _, c := range st.counts[1:] {
		line += fmt.Sprintf(", %d %s", c.n, c.name)
	}
	line += fmt.Sprintf(", %.0f/s, ", st.rate)
	p.redraw(line, st.done, st.elapsed, eta)
}

// etaText is how an ETA is shown: rounded to the second, "?" when unknown
// (negative).
func etaText(eta time.Duration) string {
	if eta < 0 {
		return "?"
	}
	return eta.Round(time.Second).String()
}

// bar is a progress bar for done out of total: "[====      ]  40%".
func bar(done, total int64) string {
	const width = 30
	frac := min(float64(done)/float64(total), 1)
	fill := int(frac * width)
	return fmt.Sprintf("[%s%s] %3.0f%%", strings.Repeat("=", fill), strings.Repeat(" ", width-fill), frac*100)
}

// redraw redraws the terminal's progress line as line followed by the time
// it took (finished) or the ETA, and ends it once finished.
func (p *progress) redraw(line string, finished bool, elapsed time.Duration, eta string) {
	if finished {
		line += "done in " + elapsed.Round(time.Millisecond).String()
	} else {
		line += "ETA " + eta
	}
	// \r and erase-line redraw the line in place.
	fmt.Fprintf(p.w, "\r\033[K%s", line)
	if finished {
		fmt.Fprintln(p.w)
	}
}

// countProgress is a generic progress report for the progress type of gen.
type countProgress struct {
	What string // what Done counts
	Done int64
	// Offsets out of Total is the completed fraction (Total 0: unknown).
	Offsets, Total int64
	Rate           float64 // Done per second
	Elapsed, ETA   time.Duration
	Finished       bool
}

// reportCount shows a countProgress: on a terminal a line redrawn in place
// with a bar, rate and ETA, otherwise a log line.
func (p *progress) reportCount(st countProgress) {
	eta := etaText(st.ETA)
	if !p.tty {
		args := []any{st.What, st.Done, "rate", fmt.Sprintf("%.0f/s", st.Rate), "elapsed", st.Elapsed.Round(time.Second)}
		if st.Total > 0 {
			args = append(args, "offsets", st.Offsets, "of", st.Total)
		}
		msg := "progress"
		if st.Finished {
			msg = "done"
		} else {
			args = append(args, "eta", eta)
		}
		p.log.Info(msg, args...)
		return
	}
	var line string
	if st.Total > 0 {
		line = bar(st.Offsets, st.Total) + " "
	}
	line += fmt.Sprintf("%d %s, %.0f/s, ", st.Done, st.What, st.Rate)
	p.redraw(line, st.Finished, st.Elapsed, eta)
}
