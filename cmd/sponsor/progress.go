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
	eta := "?"
	if st.eta >= 0 {
		eta = st.eta.Round(time.Second).String()
	}
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
		const width = 30
		frac := min(float64(first.n)/float64(st.total), 1)
		fill := int(frac * width)
		line = fmt.Sprintf("[%s%s] %3.0f%% %d/%d %s", strings.Repeat("=", fill), strings.Repeat(" ", width-fill), frac*100, first.n, st.total, first.name)
	} else {
		line = fmt.Sprintf("%d %s", first.n, first.name)
	}
	for _, c := range st.counts[1:] {
		line += fmt.Sprintf(", %d %s", c.n, c.name)
	}
	line += fmt.Sprintf(", %.0f/s, ", st.rate)
	if st.done {
		line += "done in " + st.elapsed.Round(time.Millisecond).String()
	} else {
		line += "ETA " + eta
	}
	// \r and erase-line redraw the line in place.
	fmt.Fprintf(p.w, "\r\033[K%s", line)
	if st.done {
		fmt.Fprintln(p.w)
	}
}
