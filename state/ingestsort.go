package state

import (
	"bytes"
	"slices"
)

// The run's sort: a quicksort of the entries by key, then seq, with the
// comparison inlined (slices.SortFunc calls its comparison through a
// function value, which took half of the sort's time).

// less reports whether a sorts before b: by key, then by seq.
func (in *Ingester) less(a, b *ingestEntry) bool {
	if a.abbr[0] != b.abbr[0] {
		return a.abbr[0] < b.abbr[0]
	}
	if a.abbr[1] != b.abbr[1] {
		return a.abbr[1] < b.abbr[1]
	}
	if a.abbr[2] != b.abbr[2] {
		return a.abbr[2] < b.abbr[2]
	}
	if a.klen > abbrevLen || b.klen > abbrevLen {
		if c := bytes.Compare(in.key(*a), in.key(*b)); c != 0 {
			return c < 0
		}
	} else if a.klen != b.klen { // equal words, the shorter key padded
		return a.klen < b.klen
	}
	return a.seq < b.seq
}

// compare is less as a three-way comparison.
func (in *Ingester) compare(a, b ingestEntry) int {
	switch {
	case in.less(&a, &b):
		return -1
	case in.less(&b, &a):
		return 1
	}
	return 0
}

func (in *Ingester) sortEntries(es []ingestEntry, depth int) {
	for len(es) > 12 {
		if depth == 0 {
			// Degenerate pivots: the library's pattern-defeating sort.
			slices.SortFunc(es, in.compare)
			return
		}
		depth--
		// Median of three to es[0], then Hoare's partition around it.
		m, l := len(es)/2, len(es)-1
		if in.less(&es[m], &es[0]) {
			es[m], es[0] = es[0], es[m]
		}
		if in.less(&es[l], &es[m]) {
			es[l], es[m] = es[m], es[l]
			if in.less(&es[m], &es[0]) {
				es[m], es[0] = es[0], es[m]
			}
		}
		es[0], es[m] = es[m], es[0]
		pivot := es[0]
		i, j := 0, len(es)
		for {
			for i++; i < len(es) && in.less(&es[i], &pivot); i++ {
			}
			for j--; in.less(&pivot, &es[j]); j-- {
			}
			if i >= j {
				break
			}
			es[i], es[j] = es[j], es[i]
		}
		es[0], es[j] = es[j], es[0]
		// Recurse into the smaller side, loop on the larger.
		if j < len(es)-j {
			in.sortEntries(es[:j], depth)
			es = es[j+1:]
		} else {
			in.sortEntries(es[j+1:], depth)
			es = es[:j]
		}
	}
	for i := 1; i < len(es); i++ {
		for j := i; j > 0 && in.less(&es[j], &es[j-1]); j-- {
			es[j], es[j-1] = es[j-1], es[j]
		}
	}
}
