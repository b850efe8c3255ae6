package pipeline

import (
	"log/slog"
	"slices"
	"time"
)

// fanoutReport reports the fan-outs of the instance's tasks: the progress
// of those in flight (Stats.Fanouts), and one log line and one count per
// campaign once its fan-out has finished on every partition of the
// instance.
//
// Concurrency: owned by the loop goroutine, which calls it after each
// committed transaction.
type fanoutReport struct {
	log   *slog.Logger
	stats *Stats
	// firing holds the campaigns whose fan-out finished on some partitions
	// of the instance and not yet on all.
	firing map[string]*campaignFiring
}

// campaignFiring is a campaign whose fan-out finished on some of the
// instance's partitions: their partitions and totals so far.
type campaignFiring struct {
	partitions            []int32
	candidates, delivered int64
	start                 time.Time
}

// fired adds the fan-outs tasks finished in a committed transaction to the
// campaigns firing on the instance.
func (fr *fanoutReport) fired(done []finishedFanout) {
	for _, f := range done {
		if fr.firing == nil {
			fr.firing = map[string]*campaignFiring{}
		}
		c := fr.firing[f.campaign]
		if c == nil {
			c = &campaignFiring{start: f.start}
			fr.firing[f.campaign] = c
		}
		c.partitions = append(c.partitions, f.partition)
		c.candidates += f.candidates
		c.delivered += f.delivered
		if f.start.Before(c.start) {
			c.start = f.start
		}
	}
}

// done logs once, and counts once, each campaign whose fan-out has
// finished on every partition the instance owns (or that it no longer
// fires anywhere here, its other partitions gone in a rebalance), with its
// partitions and totals: one line per campaign and instance, not one per
// partition.
func (fr *fanoutReport) done(tasks map[int32]*task) {
	for id, c := range fr.firing {
		busy := false
		for _, t := range tasks {
			if p := t.part.Campaign(id); p != nil && !p.Status.Done() {
				busy = true
				break
			}
		}
		if busy {
			continue
		}
		slices.Sort(c.partitions)
		fr.log.Info("campaign fired", "campaign", id, "partitions", c.partitions, "decided", c.candidates,
			"delivered", c.delivered, "took", time.Since(c.start).Round(time.Millisecond))
		fr.stats.Campaigns.Add(1)
		delete(fr.firing, id)
	}
}

// progress publishes the fan-outs in progress on the instance's tasks
// (Stats.Fanouts), summed by campaign.
func (fr *fanoutReport) progress(tasks map[int32]*task) {
	var fs []FanoutProgress
	at := map[string]int{}
	for _, t := range tasks {
		for id, f := range t.fanouts() {
			i, ok := at[id]
			if !ok {
				i = len(fs)
				at[id] = i
				fs = append(fs, FanoutProgress{Campaign: id, Business: f.business, Started: f.start})
			}
			p := &fs[i]
			p.Partitions++
			p.Contacts += max(f.contacts, 0)
			p.Visited += f.visited
			p.Decided += f.candidates
			if f.start.Before(p.Started) {
				p.Started = f.start
			}
		}
	}
	if len(fs) > 0 || len(fr.stats.Fanouts()) > 0 {
		fr.stats.setFanouts(fs)
	}
}
