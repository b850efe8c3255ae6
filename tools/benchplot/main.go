// Command benchplot draws the figures of docs/performance.md from the CSV
// files BenchmarkScale writes (BENCH_OUT=DIR): the pipeline's throughput
// over time (interactions and deliveries per second, from its /metrics
// sampled every 250ms) and the percentiles of the time from a campaign's
// publish to each of its inbox records.
//
//	BENCH_OUT=/tmp/bench KAFKA_BROKERS=127.0.0.1:9092 go test -run '^$' -bench Scale -benchtime 1x -timeout 60m ./e2e/
//	cd tools/benchplot && go run . -in /tmp/bench -out ../../docs/img
//
// It is its own module so that the plotting libraries stay out of the
// pipeline's dependencies.
package main

import (
	"encoding/csv"
	"flag"
	"fmt"
	"image/color"
	"log"
	"os"
	"path/filepath"
	"strconv"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
)

func main() {
	in := flag.String("in", ".", "folder of scale-throughput.csv and scale-fanout-latency.csv")
	out := flag.String("out", ".", "folder to write the PNG files to")
	flag.Parse()
	if err := os.MkdirAll(*out, 0o755); err != nil {
		log.Fatal(err)
	}
	if err := throughput(filepath.Join(*in, "scale-throughput.csv"), filepath.Join(*out, "throughput.png")); err != nil {
		log.Fatalf("throughput: %v", err)
	}
	if err := latency(filepath.Join(*in, "scale-fanout-latency.csv"), filepath.Join(*out, "fanout-latency.png")); err != nil {
		log.Fatalf("latency: %v", err)
	}
}

func readCSV(path string) ([][]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	rows, err := csv.NewReader(f).ReadAll()
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if len(rows) < 2 {
		return nil, fmt.Errorf("%s: no data", path)
	}
	return rows[1:], nil
}

func num(s string) float64 {
	v, err := strconv.ParseFloat(s, 64)
	if err != nil {
		log.Fatalf("not a number: %q", s)
	}
	return v
}

// throughput plots the per-second rates of two counters sampled over time.
func throughput(in, out string) error {
	rows, err := readCSV(in)
	if err != nil {
		return err
	}
	var ins, dels plotter.XYs
	for i := 1; i < len(rows); i++ {
		t0, t1 := num(rows[i-1][0]), num(rows[i][0])
		if t1 <= t0 {
			continue
		}
		ins = append(ins, plotter.XY{X: t1, Y: (num(rows[i][1]) - num(rows[i-1][1])) / (t1 - t0)})
		dels = append(dels, plotter.XY{X: t1, Y: (num(rows[i][2]) - num(rows[i-1][2])) / (t1 - t0)})
	}
	p := plot.New()
	p.Title.Text = "sponsor run on Apache Kafka: throughput over time"
	p.X.Label.Text = "seconds since the instance started"
	p.Y.Label.Text = "records per second (committed)"
	p.Add(plotter.NewGrid())
	li, err := plotter.NewLine(ins)
	if err != nil {
		return err
	}
	li.Color = color.RGBA{R: 31, G: 119, B: 180, A: 255}
	ld, err := plotter.NewLine(dels)
	if err != nil {
		return err
	}
	ld.Color = color.RGBA{R: 214, G: 39, B: 40, A: 255}
	p.Add(li, ld)
	p.Legend.Add("interactions/s", li)
	p.Legend.Add("deliveries/s (fan-out)", ld)
	p.Legend.Top = true
	return p.Save(9*vg.Inch, 4.5*vg.Inch, out)
}

// latency plots a percentile curve.
func latency(in, out string) error {
	rows, err := readCSV(in)
	if err != nil {
		return err
	}
	var pts plotter.XYs
	for _, r := range rows {
		pts = append(pts, plotter.XY{X: num(r[0]), Y: num(r[1])})
	}
	p := plot.New()
	p.Title.Text = "fan-out: campaign publish to inbox record, by percentile"
	p.X.Label.Text = "percentile of the campaign's deliveries"
	p.Y.Label.Text = "seconds after the publish"
	p.Add(plotter.NewGrid())
	l, err := plotter.NewLine(pts)
	if err != nil {
		return err
	}
	p.Add(l)
	return p.Save(9*vg.Inch, 4.5*vg.Inch, out)
}
