package state

import (
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/bloom"
	"github.com/cockroachdb/pebble/v2/sstable/block"
	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/sponsored/sponsor/policy"
)

// Options configures a Store.
type Options struct {
	// CacheSize is Pebble's block cache in bytes. Default 128 MiB. Pebble
	// reserves the memory of its memtables (the one being written and
	// those being flushed) out of this cache, so it must be several
	// MemTableSize larger than the blocks it should hold: with 64 MiB and
	// 32 MiB memtables nothing was left for blocks, and reads of flushed
	// tables missed every time (docs/performance.md, first and sixth
	// rounds).
	CacheSize int64
	// MemTableSize is the size of one Pebble memtable in bytes. Default
	// 16 MiB. Each flush of random user keys overlaps the whole last
	// level, so compactions rewrite about the whole state per
	// 4 x MemTableSize flushed: with 4 MiB memtables they took as much CPU
	// as the processing. 16 MiB with the 128 MiB cache cut the process's
	// CPU by a quarter per interaction and per delivery (sixth round).
	MemTableSize uint64
	// Logger receives Pebble's own logs at debug level. Default: discarded.
	Logger *slog.Logger
	// FS is the file system the store lives on. Default vfs.Default, the
	// operating system's; vfs.NewMem() keeps a store in memory (tests).
	FS vfs.FS
	// IngestRunBytes is the memory, in bytes, an Ingester sorts changelog
	// records in before it writes them out as one sorted run (the records'
	// keys and values plus 40 bytes each). Default 32 MiB. A restore of
	// more records than fit writes several runs to the store's folder and
	// merges them; each restore in flight holds this much, so the default
	// keeps pipeline.DefaultRestoreParallelism restores at 128 MiB.
	IngestRunBytes int
}

func (o *Options) ensureDefaults() {
	if o.CacheSize <= 0 {
		o.CacheSize = 128 << 20
	}
	if o.MemTableSize == 0 {
		o.MemTableSize = 16 << 20
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.FS == nil {
		o.FS = vfs.Default
	}
	if o.IngestRunBytes <= 0 {
		o.IngestRunBytes = 32 << 20
	}
}

// Store is the Pebble database that holds the state of every task of one
// instance. It is safe for concurrent use; each partition's keys are written
// by the one goroutine that owns the task.
type Store struct {
	db       *pebble.DB
	cacheCap int64 // the block cache's size (Options.CacheSize)
	lock     *pebble.Lock
	readOnly bool

	po        *pebble.Options // the options the store was opened with, defaults filled in
	fs        vfs.FS
	ingestDir string       // where Ingesters write their runs and tables (ingestFolder)
	runBytes  int          // Options.IngestRunBytes
	ingests   atomic.Int64 // Ingesters made, for their folders' names

	mu       sync.Mutex
	applying map[int32]*Batch // each partition's apply in flight (Batch.Apply)
	failed   error            // the first apply that failed
}

func (s *Store) startApply(b *Batch) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.applying == nil {
		s.applying = map[int32]*Batch{}
	}
	s.applying[b.p] = b
}

func (s *Store) endApply(b *Batch) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.applying[b.p] == b {
		delete(s.applying, b.p)
	}
	if b.applyErr != nil && s.failed == nil {
		s.failed = b.applyErr
	}
}

// waitApplied waits until partition p has no apply in flight (all of them
// when p is negative), and returns the first apply failure of the store,
// after which its state cannot be trusted.
func (s *Store) waitApplied(p int32) error {
	s.mu.Lock()
	var wait []*Batch
	for q, b := range s.applying {
		if p < 0 || q == p {
			wait = append(wait, b)
		}
	}
	s.mu.Unlock()
	for _, b := range wait {
		b.Wait() // a failure is in s.failed before Wait returns (Apply)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.failed
}

// ErrLocked is returned (wrapped) by Open and OpenReadOnly when another
// store, usually a running instance, holds the folder's lock.
var ErrLocked = errors.New("state: the folder is in use")

// Open opens (or creates) the store in dir. It fails with ErrLocked when
// another store holds dir.
func Open(dir string, opts Options) (*Store, error) {
	return openStore(dir, opts, false)
}

// OpenReadOnly opens the existing store in dir for reading only, for tools
// that inspect a state folder. It fails with ErrLocked when another store
// (a running instance) holds dir: Pebble's lock excludes readers too.
func OpenReadOnly(dir string, opts Options) (*Store, error) {
	if _, err := os.Stat(dir); err != nil {
		return nil, fmt.Errorf("open state store in %s: %w", dir, err)
	}
	return openStore(dir, opts, true)
}

func openStore(dir string, opts Options, readOnly bool) (*Store, error) {
	opts.ensureDefaults()
	if !readOnly {
		if err := opts.FS.MkdirAll(dir, 0o755); err != nil {
			return nil, fmt.Errorf("open state store in %s: %w", dir, err)
		}
	}
	// Take the lock first, to tell a folder in use from other failures.
	lock, err := pebble.LockDirectory(dir, opts.FS)
	if err != nil {
		if _, ok := errors.AsType[*fs.PathError](err); ok {
			return nil, fmt.Errorf("open state store in %s: %w", dir, err)
		}
		// Another process's lock (EAGAIN, EACCES) or this process's.
		return nil, fmt.Errorf("%w: %s is locked (%v)", ErrLocked, dir, err)
	}
	cache := pebble.NewCache(opts.CacheSize)
	defer cache.Unref()
	po := &pebble.Options{
		Cache:        cache,
		MemTableSize: opts.MemTableSize,
		// The changelog in Kafka is the truth and every batch carries its
		// checkpoint, so a crash that loses the memtable loses the
		// checkpoint with the data and the restore replays both.
		DisableWAL:       true,
		ReadOnly:         readOnly,
		ErrorIfNotExists: readOnly,
		Lock:             lock,
		Logger:           pebbleLogger{opts.Logger},
		FS:               opts.FS,
	}
	// A bloom filter (10 bits per key, about 1% false positives) on every
	// level, L0 included (Pebble's default has none): most contact reads
	// of the steady state are for pairs the store does not hold yet (a
	// first interaction), which without a filter search a table of every
	// level, and with one skip each after a probe.
	for i := range po.Levels {
		po.Levels[i].FilterPolicy = bloom.FilterPolicy(10)
	}
	// zstd (level 3) on the last two levels, which hold about all of the
	// state, and Pebble's default (Snappy) above them, where tables are
	// short-lived and written often: 39 bytes per contact on disk instead
	// of 48 with realistic ids (BenchmarkBytesPerContact;
	// docs/performance.md, the bytes round). Snappy gained nothing there:
	// random ids do not compress without an entropy coder. Reads are not
	// slowed where it counts: the block cache holds blocks uncompressed.
	// An Ingester's tables are the last level's, so a restore writes
	// them with zstd too.
	po.ApplyCompressionSettings(storeCompression)
	// Filled in here (Open does it on a copy) for the writer options of
	// the tables an Ingester builds.
	po.EnsureDefaults()
	ingestDir := opts.FS.PathJoin(dir, ingestFolder)
	if !readOnly {
		// Runs and tables of a restore a crash interrupted: that restore
		// wrote no checkpoint, and starts again.
		if err := opts.FS.RemoveAll(ingestDir); err != nil {
			lock.Close()
			return nil, fmt.Errorf("open state store in %s: remove an interrupted restore's files: %w", dir, err)
		}
	}
	db, err := pebble.Open(dir, po)
	if err != nil {
		lock.Close()
		return nil, fmt.Errorf("open state store in %s: %w", dir, err)
	}
	s := &Store{db: db, cacheCap: opts.CacheSize, lock: lock, readOnly: readOnly,
		po: po, fs: opts.FS, ingestDir: ingestDir, runBytes: opts.IngestRunBytes}
	if err := s.dropLegacy(dir, opts.Logger); err != nil {
		s.Close()
		return nil, err
	}
	return s, nil
}

// dropLegacy drops the partitions whose keys have the layout of versions
// before the business-first contacts ('c' contact keys and an 'i' index in
// Pebble): the restore then rebuilds them from the changelog, whose contact
// records did not change. A read-only store reports them instead.
func (s *Store) dropLegacy(dir string, log *slog.Logger) error {
	ps, err := partitions(s.db)
	if err != nil {
		return fmt.Errorf("open state store in %s: %w", dir, err)
	}
	for _, p := range ps {
		legacy := false
		for _, kind := range []byte{kindContact, kindLegacyIndex} {
			prefix := append(appendPartition(nil, p), kind)
			err := s.eachKey(prefix, func([]byte) error { legacy = true; return errStopScan })
			if err != nil && !errors.Is(err, errStopScan) {
				return fmt.Errorf("open state store in %s: %w", dir, err)
			}
		}
		if !legacy {
			continue
		}
		if s.readOnly {
			return fmt.Errorf("state store in %s: partition %d has the key layout of an older version: start the pipeline on it, or run `sponsor state rebuild`, to rebuild it from the changelog", dir, p)
		}
		log.Warn("state of the partition has the key layout of an older version: dropped; its restore rebuilds it from the changelog", "partition", p)
		if err := s.DropPartition(p); err != nil {
			return err
		}
	}
	return nil
}

var errStopScan = errors.New("stop the scan")

// Close flushes the memtables (so a clean restart restores little) and
// closes the store.
func (s *Store) Close() error {
	aerr := s.waitApplied(-1)
	var ferr error
	if !s.readOnly {
		ferr = s.db.Flush()
	}
	err := s.db.Close()
	if lerr := s.lock.Close(); err == nil {
		err = lerr
	}
	if err != nil {
		return fmt.Errorf("close state store: %w", err)
	}
	if ferr != nil {
		return fmt.Errorf("flush state store: %w", ferr)
	}
	return aerr
}

// Metrics returns Pebble's metrics of the store (its block cache,
// memtables, levels, flushes and compactions) and the block cache's
// configured size in bytes.
func (s *Store) Metrics() (m *pebble.Metrics, cacheCapacity int64) {
	return s.db.Metrics(), s.cacheCap
}

// Checkpoint returns the next changelog offset partition p's state needs
// (-1 when the store has nothing of p).
func (s *Store) Checkpoint(p int32) (int64, error) {
	if err := s.waitApplied(p); err != nil {
		return 0, err
	}
	v, closer, err := s.db.Get(append(appendPartition(nil, p), kindCheckpoint))
	if errors.Is(err, pebble.ErrNotFound) {
		return -1, nil
	}
	if err != nil {
		return 0, fmt.Errorf("read checkpoint of partition %d: %w", p, err)
	}
	defer closer.Close()
	d := decoder{b: v}
	d.version("checkpoint")
	off := d.int()
	return off, d.done("checkpoint")
}

func checkpointValue(off int64) []byte {
	e := encoder{}
	e.byte(valueVersion)
	e.int(off)
	return e.b
}

// EachRecord calls fn with each key of partition p's state as the
// changelog record that wrote it (its changelog key and value), in the
// store's order; the checkpoint, which is the store's and no changelog
// record, is left out. fn must not keep key or value. For tools and tests
// that compare states.
func (s *Store) EachRecord(p int32, fn func(key, value []byte) error) error {
	if err := s.waitApplied(p); err != nil {
		return err
	}
	start := appendPartition(nil, p)
	it, err := s.db.NewIter(&pebble.IterOptions{LowerBound: start, UpperBound: appendPartition(nil, p+1)})
	if err != nil {
		return fmt.Errorf("read state of partition %d: %w", p, err)
	}
	defer it.Close()
	var ck []byte
	for it.First(); it.Valid(); it.Next() {
		k := it.Key()[prefixLen:]
		if len(k) == 1 && k[0] == kindCheckpoint {
			continue
		}
		if ck, err = appendChangelogKey(ck[:0], k); err != nil {
			return fmt.Errorf("read state of partition %d: %w", p, err)
		}
		if err := fn(ck, it.Value()); err != nil {
			return err
		}
	}
	if err := it.Error(); err != nil {
		return fmt.Errorf("read state of partition %d: %w", p, err)
	}
	return nil
}

// DropPartition deletes every key of partition p, checkpoint included.
func (s *Store) DropPartition(p int32) error {
	_ = s.waitApplied(p) // dropped anyway: a failed apply is what a drop and a restore mend
	start := appendPartition(nil, p)
	if err := s.db.DeleteRange(start, appendPartition(nil, p+1), pebble.NoSync); err != nil {
		return fmt.Errorf("drop state of partition %d: %w", p, err)
	}
	return nil
}

// Restorer applies changelog records of one partition to the store.
type Restorer struct {
	s      *Store
	p      int32
	b      *pebble.Batch
	n      int
	keyBuf []byte
}

// NewRestorer returns a Restorer for partition p.
func (s *Store) NewRestorer(p int32) *Restorer {
	_ = s.waitApplied(p) // in order after it; a failure is Checkpoint's to report
	return &Restorer{s: s, p: p, b: s.db.NewBatch()}
}

// Add stages one changelog record (value nil: a deletion).
func (r *Restorer) Add(key, value []byte) error {
	if len(key) == 0 {
		return fmt.Errorf("%w: empty changelog key", ErrCorrupt)
	}
	var err error
	r.keyBuf, err = appendPebbleKey(r.keyBuf[:0], r.p, key)
	if err != nil {
		return err
	}
	if value == nil {
		err = r.b.Delete(r.keyBuf, nil)
	} else {
		err = r.b.Set(r.keyBuf, value, nil)
	}
	if err != nil {
		return err
	}
	r.n++
	return nil
}

// Len is the number of records staged since the last Flush.
func (r *Restorer) Len() int { return r.n }

// Flush writes what was staged, with next as the partition's checkpoint.
func (r *Restorer) Flush(next int64) error {
	if err := r.b.Set(append(appendPartition(nil, r.p), kindCheckpoint), checkpointValue(next), nil); err != nil {
		return err
	}
	if err := r.b.Commit(pebble.NoSync); err != nil {
		return fmt.Errorf("apply restored changelog of partition %d: %w", r.p, err)
	}
	r.b.Close()
	r.b = r.s.db.NewBatch()
	r.n = 0
	return nil
}

// Close discards anything not flushed.
func (r *Restorer) Close() { r.b.Close() }

// LoadTask reads partition p's metadata and campaigns.
func (s *Store) LoadTask(p int32) (policy.Meta, []policy.Progress, error) {
	m := policy.Meta{Input: -1}
	if err := s.waitApplied(p); err != nil {
		return m, nil, err
	}
	v, closer, err := s.db.Get(metaKey(appendPartition(nil, p)))
	switch {
	case errors.Is(err, pebble.ErrNotFound):
	case err != nil:
		return m, nil, fmt.Errorf("read task metadata of partition %d: %w", p, err)
	default:
		m, err = DecodeMeta(v)
		closer.Close()
		if err != nil {
			return m, nil, fmt.Errorf("partition %d: %w", p, err)
		}
	}
	prefix := append(appendPartition(nil, p), kindCampaign)
	it, err := s.db.NewIter(&pebble.IterOptions{LowerBound: prefix, UpperBound: prefixEnd(prefix)})
	if err != nil {
		return m, nil, err
	}
	defer it.Close()
	var cs []policy.Progress
	for it.First(); it.Valid(); it.Next() {
		c, err := DecodeProgress(it.Value())
		if err != nil {
			return m, nil, fmt.Errorf("campaign %q of partition %d: %w", it.Key()[prefixLen+1:], p, err)
		}
		cs = append(cs, c)
	}
	return m, cs, it.Error()
}

// storeCompression is the store's compression by level
// (pebble.Options.ApplyCompressionSettings).
func storeCompression() pebble.DBCompressionSettings {
	cs := pebble.DBCompressionSettings{Name: "sponsor"}
	for i := range cs.Levels {
		cs.Levels[i] = block.SnappyCompression
	}
	cs.Levels[len(cs.Levels)-2] = block.ZstdCompression
	cs.Levels[len(cs.Levels)-1] = block.ZstdCompression
	return cs
}

type pebbleLogger struct{ l *slog.Logger }

func (l pebbleLogger) Infof(format string, args ...any)  { l.l.Debug(fmt.Sprintf(format, args...)) }
func (l pebbleLogger) Errorf(format string, args ...any) { l.l.Error(fmt.Sprintf(format, args...)) }
func (l pebbleLogger) Fatalf(format string, args ...any) {
	// Pebble calls Fatalf on invariant violations and expects no return.
	l.l.Error(fmt.Sprintf(format, args...))
	panic(fmt.Sprintf(format, args...))
}
