package state

import (
	"bufio"
	"bytes"
	"container/heap"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/bits"
	"strconv"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/objstorage/objstorageprovider"
	"github.com/cockroachdb/pebble/v2/sstable"
	"github.com/cockroachdb/pebble/v2/sstable/block"
)

// ingestFolder is the folder, in the store's, where Ingesters write their
// runs and tables. Open empties it: what it holds then is an interrupted
// restore's.
const ingestFolder = "restore-ingest"

// ingestTableBytes is the size at which an Ingester starts a new table:
// Pebble's default target size of the last level's tables.
const ingestTableBytes = 128 << 20

// ingestEntrySize is the memory of one ingestEntry, counted in the run's
// budget (Options.IngestRunBytes).
const ingestEntrySize = 40

// Ingester restores one partition from far behind (a lost or stale state
// folder, or a large gap): instead of writing the changelog through
// Pebble's memtable in batches, as a Restorer does, it sorts the records
// and ingests them into Pebble as sorted tables, with the checkpoint, in
// one atomic step (pebble.DB.Ingest), so the tables go straight to the
// lowest level they fit without being flushed and compacted again.
//
// The changelog is compacted but not sorted, and may hold several
// versions and deletions of a key: the last one wins. Records are sorted
// in runs of Options.IngestRunBytes; a run that fills is written, sorted
// and with one version per key, to a file in the store's folder, and
// Finish merges the runs (the later wins) into tables that do not overlap.
//
// Nothing is visible in the store, checkpoint included, until Finish has
// ingested every table: a crash or an error before leaves the partition as
// it was, with its old checkpoint or none, and the restore starts again
// from there. (A fresh Ingester drops the partition's keys just before the
// ingest: an ingest that fails after it leaves the partition empty, with
// no checkpoint, which a restore from the changelog's start mends too.)
//
// An Ingester is used by one goroutine.
type Ingester struct {
	s     *Store
	p     int32
	fresh bool
	dir   string // this Ingester's folder in the store's ingestFolder

	runBytes   int // Options.IngestRunBytes
	tableBytes uint64
	arena      []byte        // the run's keys (without the partition prefix), each followed by its value
	ents       []ingestEntry // the run's records, in changelog order until sorted
	runs       []string      // the runs written to files, oldest first
	tables     []string      // the tables written
	n          int
	keyBuf     []byte

	// tableWritten, if not nil, is called after each table is written,
	// before the ingest; an error stops Finish there (tests of a crash
	// between tables).
	tableWritten func(n int) error
}

// abbrevLen is the length of ingestEntry.abbr in bytes.
const abbrevLen = 24

// ingestEntry is one changelog record of a run.
type ingestEntry struct {
	// abbr is the key's first 24 bytes as three big-endian words
	// (zero-padded): most comparisons of the sort end on them, without
	// reading the key in the arena (a cache miss). Contact keys share
	// their first bytes ('b', the business's length, often the start of
	// its id), so 8 bytes left a third of the sort's comparisons to the
	// arena's keys: 1.6 s of CPU to sort 700k records.
	abbr [3]uint64
	off  uint32 // the key's start in the arena; the value follows it
	klen uint32
	vlen int32  // -1: a deletion
	seq  uint32 // the record's place in the run: of equal keys the later wins
}

// NewIngester returns an Ingester of partition p. fresh says the records
// start at the changelog's start: they are then the whole state of p, and
// Finish replaces whatever the store holds of p (a stale state folder)
// and drops deletions. Otherwise the records continue the store's state
// from its checkpoint, and a deletion deletes what the store holds.
func (s *Store) NewIngester(p int32, fresh bool) *Ingester {
	_ = s.waitApplied(p) // in order after it; a failure is Checkpoint's to report
	n := s.ingests.Add(1)
	return &Ingester{
		s: s, p: p, fresh: fresh,
		dir:        s.fs.PathJoin(s.ingestDir, fmt.Sprintf("%d-%d", p, n)),
		runBytes:   s.runBytes,
		tableBytes: ingestTableBytes,
	}
}

// Add stages one changelog record (value nil: a deletion), in changelog
// order.
func (in *Ingester) Add(key, value []byte) error {
	if len(key) == 0 {
		return fmt.Errorf("%w: empty changelog key", ErrCorrupt)
	}
	var err error
	// The Pebble key without its partition prefix, which every key of the
	// run shares.
	in.keyBuf, err = appendPebbleKey(in.keyBuf[:0], in.p, key)
	if err != nil {
		return err
	}
	k := in.keyBuf[prefixLen:]
	if len(in.ents) > 0 && len(in.arena)+len(k)+len(value)+ingestEntrySize*(len(in.ents)+1) > in.runBytes {
		if err := in.spill(); err != nil {
			return err
		}
	}
	if len(in.arena)+len(k)+len(value) > 1<<32-1 || len(in.ents) >= 1<<32-1 {
		return fmt.Errorf("restore partition %d by ingestion: a run over 4 GiB (Options.IngestRunBytes %d)", in.p, in.runBytes)
	}
	if in.arena == nil {
		// At once, rather than grown by copies: a restore from far behind
		// fills a run or more.
		// Sized for records of 64 bytes, the budget split between them.
		n := in.runBytes / (ingestEntrySize + 64)
		in.arena = make([]byte, 0, in.runBytes-n*ingestEntrySize)
		in.ents = make([]ingestEntry, 0, n)
	}
	e := ingestEntry{abbr: abbrev(k), off: uint32(len(in.arena)), klen: uint32(len(k)), vlen: int32(len(value)), seq: uint32(len(in.ents))}
	if value == nil {
		e.vlen = -1
	}
	in.arena = append(in.arena, k...)
	in.arena = append(in.arena, value...)
	in.ents = append(in.ents, e)
	in.n++
	return nil
}

// Len is the number of records added.
func (in *Ingester) Len() int { return in.n }

func abbrev(k []byte) [3]uint64 {
	var b [abbrevLen]byte
	copy(b[:], k)
	return [3]uint64{binary.BigEndian.Uint64(b[:8]), binary.BigEndian.Uint64(b[8:16]), binary.BigEndian.Uint64(b[16:])}
}

func (in *Ingester) key(e ingestEntry) []byte { return in.arena[e.off : e.off+e.klen] }

func (in *Ingester) value(e ingestEntry) []byte {
	if e.vlen < 0 {
		return nil
	}
	start := e.off + e.klen
	return in.arena[start : start+uint32(e.vlen)]
}

// sortRun sorts the run by key and keeps the last record of each key.
func (in *Ingester) sortRun() {
	depth := 2 * bits.Len(uint(len(in.ents)))
	in.sortEntries(in.ents, depth)
	out := in.ents[:0]
	for i, e := range in.ents {
		if i+1 < len(in.ents) {
			next := in.ents[i+1]
			if next.abbr == e.abbr && bytes.Equal(in.key(next), in.key(e)) {
				continue // a later version follows
			}
		}
		out = append(out, e)
	}
	in.ents = out
}

// spill writes the run, sorted, to a file and starts the next.
func (in *Ingester) spill() error {
	in.sortRun()
	if err := in.s.fs.MkdirAll(in.dir, 0o755); err != nil {
		return fmt.Errorf("restore partition %d by ingestion: %w", in.p, err)
	}
	path := in.s.fs.PathJoin(in.dir, "run-"+strconv.Itoa(len(in.runs)))
	f, err := in.s.fs.Create(path, "")
	if err != nil {
		return fmt.Errorf("restore partition %d by ingestion: write a run: %w", in.p, err)
	}
	w := bufio.NewWriterSize(f, 1<<20)
	var hdr []byte
	for _, e := range in.ents {
		// uvarint(len(key)) key uvarint(len(value)+1, 0 for a deletion) value
		hdr = binary.AppendUvarint(hdr[:0], uint64(e.klen))
		hdr = binary.AppendUvarint(hdr, uint64(e.vlen+1))
		w.Write(hdr)
		w.Write(in.key(e))
		w.Write(in.value(e))
	}
	err = w.Flush()
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("restore partition %d by ingestion: write a run: %w", in.p, err)
	}
	in.runs = append(in.runs, path)
	in.arena, in.ents = in.arena[:0], in.ents[:0]
	return nil
}

// Finish writes the records added as sorted tables, with next as the
// partition's checkpoint, and ingests them into the store in one atomic
// step. For a fresh Ingester the partition's keys are dropped first.
// Until Finish returns nil nothing of the records, and no new checkpoint,
// is in the store.
func (in *Ingester) Finish(ctx context.Context, next int64) error {
	in.sortRun()
	srcs := make([]ingestSource, 0, len(in.runs)+1)
	defer func() {
		for _, src := range srcs {
			src.close()
		}
	}()
	for _, path := range in.runs {
		f, err := in.s.fs.Open(path)
		if err != nil {
			return fmt.Errorf("restore partition %d by ingestion: read a run: %w", in.p, err)
		}
		srcs = append(srcs, &fileSource{f: f, r: bufio.NewReaderSize(f, 1<<20)})
	}
	srcs = append(srcs, &memSource{in: in, i: -1})
	if err := in.writeTables(srcs, next); err != nil {
		return err
	}
	if in.fresh {
		// Before the ingest, so the tables' keys come after the drop; and
		// only when the store holds keys of p: the drop's range deletion
		// would overlap the tables, which then go to level 0 and are
		// compacted again, the work the ingest is there to save.
		held, err := in.s.holds(in.p)
		if err != nil {
			return err
		}
		if held {
			if err := in.s.DropPartition(in.p); err != nil {
				return err
			}
		}
	}
	if err := in.s.db.Ingest(ctx, in.tables); err != nil {
		return fmt.Errorf("restore partition %d by ingestion: ingest %d tables: %w", in.p, len(in.tables), err)
	}
	in.tables = nil // Ingest removed them
	return nil
}

// holds reports whether the store holds a key of partition p.
func (s *Store) holds(p int32) (bool, error) {
	start := appendPartition(nil, p)
	it, err := s.db.NewIter(&pebble.IterOptions{LowerBound: start, UpperBound: appendPartition(nil, p+1)})
	if err != nil {
		return false, err
	}
	held := it.First()
	if err := it.Close(); err != nil {
		return false, fmt.Errorf("read state of partition %d: %w", p, err)
	}
	return held, nil
}

// Close removes the Ingester's files; what was not ingested is discarded.
func (in *Ingester) Close() {
	_ = in.s.fs.RemoveAll(in.dir)
}

// writeTables merges srcs (of equal keys the later source's wins) into
// tables, the checkpoint next at its place among the keys.
func (in *Ingester) writeTables(srcs []ingestSource, next int64) error {
	if err := in.s.fs.MkdirAll(in.dir, 0o755); err != nil {
		return fmt.Errorf("restore partition %d by ingestion: %w", in.p, err)
	}
	h := make(sourceHeap, 0, len(srcs))
	for i, src := range srcs {
		ok, err := src.next()
		if err != nil {
			return fmt.Errorf("restore partition %d by ingestion: read a run: %w", in.p, err)
		}
		if ok {
			h = append(h, heapItem{src: src, order: i})
		}
	}
	heap.Init(&h)
	tw := tableWriter{in: in, cpKey: []byte{kindCheckpoint}, cpValue: checkpointValue(next)}
	advance := func() error {
		ok, err := h[0].src.next()
		if err != nil {
			return fmt.Errorf("restore partition %d by ingestion: read a run: %w", in.p, err)
		}
		if ok {
			heap.Fix(&h, 0)
		} else {
			heap.Pop(&h)
		}
		return nil
	}
	if len(srcs) == 1 { // one run, in memory: no merge
		for ok := len(h) == 1; ok; {
			if err := tw.add(srcs[0].key(), srcs[0].value(), srcs[0].deletion()); err != nil {
				return err
			}
			ok, _ = srcs[0].next()
		}
		return tw.finish()
	}
	var last []byte
	for len(h) > 0 {
		src := h[0].src
		if err := tw.add(src.key(), src.value(), src.deletion()); err != nil {
			return err
		}
		last = append(last[:0], src.key()...)
		if err := advance(); err != nil {
			return err
		}
		for len(h) > 0 && bytes.Equal(h[0].src.key(), last) {
			if err := advance(); err != nil { // an older version
				return err
			}
		}
	}
	return tw.finish()
}

// tableWriter writes sorted keys (without the partition prefix) into
// tables of about Ingester.tableBytes.
type tableWriter struct {
	in              *Ingester
	w               *sstable.Writer
	key             []byte
	cpKey, cpValue  []byte
	wroteCheckpoint bool
}

func (t *tableWriter) add(k, v []byte, deletion bool) error {
	// The checkpoint's key is the one byte kindCheckpoint: it goes before
	// the first key from that byte up (a byte compared, not the keys).
	if !t.wroteCheckpoint && k[0] >= kindCheckpoint {
		t.wroteCheckpoint = true
		if err := t.write(t.cpKey, t.cpValue, false); err != nil {
			return err
		}
		if len(k) == 1 && k[0] == kindCheckpoint {
			return nil // the checkpoint is the store's, as the Restorer's Flush writes it over
		}
	}
	if deletion && t.in.fresh {
		return nil // nothing to delete in a dropped range
	}
	return t.write(k, v, deletion)
}

func (t *tableWriter) write(k, v []byte, deletion bool) error {
	in := t.in
	if t.w == nil {
		path := in.s.fs.PathJoin(in.dir, fmt.Sprintf("table-%d.sst", len(in.tables)))
		f, err := in.s.fs.Create(path, "")
		if err != nil {
			return fmt.Errorf("restore partition %d by ingestion: write a table: %w", in.p, err)
		}
		in.tables = append(in.tables, path)
		o := in.s.po.MakeWriterOptions(len(in.s.po.Levels)-1, in.s.db.TableFormat())
		// The tables may land above the last level (a gap restored
		// over a state), and carry deletions then.
		o.WritingToLowestLevel = false
		// Snappy, not the last level's zstd (storeCompression): a
		// restore is the partition's downtime, and zstd took a third
		// more of its CPU (BenchmarkRestore, ingest_cpu_us/rec: 1.1-1.3
		// instead of 0.9-1.0). The compactions that rewrite the tables
		// later write them with zstd.
		o.Compression = block.SnappyCompression
		t.w = sstable.NewWriter(objstorageprovider.NewFileWritable(f), o)
	}
	t.key = appendPartition(t.key[:0], in.p)
	t.key = append(t.key, k...)
	var err error
	if deletion {
		err = t.w.Delete(t.key)
	} else {
		err = t.w.Set(t.key, v)
	}
	if err != nil {
		return fmt.Errorf("restore partition %d by ingestion: write a table: %w", in.p, err)
	}
	if t.w.Raw().EstimatedSize() >= in.tableBytes {
		return t.closeTable()
	}
	return nil
}

func (t *tableWriter) closeTable() error {
	in := t.in
	err := t.w.Close() // syncs the file, as Ingest requires
	t.w = nil
	if err != nil {
		return fmt.Errorf("restore partition %d by ingestion: write a table: %w", in.p, err)
	}
	if in.tableWritten != nil {
		return in.tableWritten(len(in.tables))
	}
	return nil
}

func (t *tableWriter) finish() error {
	if !t.wroteCheckpoint {
		t.wroteCheckpoint = true
		if err := t.write(t.cpKey, t.cpValue, false); err != nil {
			return err
		}
	}
	if t.w != nil {
		return t.closeTable()
	}
	return nil
}

// ingestSource is a sorted run, one version per key.
type ingestSource interface {
	// next moves to the next record, false at the end.
	next() (bool, error)
	key() []byte
	value() []byte
	deletion() bool
	close()
}

// memSource is the run still in memory, sorted.
type memSource struct {
	in *Ingester
	i  int
}

func (m *memSource) next() (bool, error) { m.i++; return m.i < len(m.in.ents), nil }
func (m *memSource) key() []byte         { return m.in.key(m.in.ents[m.i]) }
func (m *memSource) value() []byte       { return m.in.value(m.in.ents[m.i]) }
func (m *memSource) deletion() bool      { return m.in.ents[m.i].vlen < 0 }
func (m *memSource) close()              {}

// fileSource reads a run that spill wrote.
type fileSource struct {
	f   io.Closer
	r   *bufio.Reader
	buf []byte
	k   int // the key's length in buf, the value follows
	del bool
}

func (s *fileSource) next() (bool, error) {
	klen, err := binary.ReadUvarint(s.r)
	if errors.Is(err, io.EOF) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	vlen, err := binary.ReadUvarint(s.r)
	if err != nil {
		return false, fmt.Errorf("truncated run: %w", err)
	}
	s.del = vlen == 0
	if !s.del {
		vlen--
	}
	n := int(klen + vlen)
	if cap(s.buf) < n {
		s.buf = make([]byte, n, 2*n)
	}
	s.buf = s.buf[:n]
	if _, err := io.ReadFull(s.r, s.buf); err != nil {
		return false, fmt.Errorf("truncated run: %w", err)
	}
	s.k = int(klen)
	return true, nil
}

func (s *fileSource) key() []byte { return s.buf[:s.k] }
func (s *fileSource) value() []byte {
	if s.del {
		return nil
	}
	return s.buf[s.k:]
}
func (s *fileSource) deletion() bool { return s.del }
func (s *fileSource) close()         { s.f.Close() }

// sourceHeap orders the sources by their key, and of equal keys the later
// source (the newer run) first.
type sourceHeap []heapItem

type heapItem struct {
	src   ingestSource
	order int
}

func (h sourceHeap) Len() int { return len(h) }
func (h sourceHeap) Less(i, j int) bool {
	if c := bytes.Compare(h[i].src.key(), h[j].src.key()); c != 0 {
		return c < 0
	}
	return h[i].order > h[j].order
}
func (h sourceHeap) Swap(i, j int) { h[i], h[j] = h[j], h[i] }
func (h *sourceHeap) Push(x any)   { *h = append(*h, x.(heapItem)) }
func (h *sourceHeap) Pop() any {
	old := *h
	x := old[len(old)-1]
	*h = old[:len(old)-1]
	return x
}
