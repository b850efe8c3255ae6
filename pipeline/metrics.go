package pipeline

import (
	"fmt"
	"log/slog"
	"strconv"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/plugin/kprom"

	"github.com/sponsored/sponsor/state"
)

// KafkaMetricsNamespace prefixes the Kafka client metrics (franz-go's kprom
// plugin) the runner exports: sponsor_kafka_produce_records_total and so on.
const KafkaMetricsNamespace = "sponsor_kafka"

// The values of the client label of the Kafka client metrics: one per
// client a Runner builds.
const (
	// ClientSession is the group member and transactional producer: it
	// fetches the interactions and writes the inbox, the changelog, the
	// dead letters and the decisions.
	ClientSession = "session"
	// ClientCampaigns reads the whole campaigns topic (the broadcast).
	ClientCampaigns = "campaigns"
	// ClientAdmin lists offsets (lag, restores) and checks the topics.
	ClientAdmin = "admin"
)

// Register exports the runner's metrics on reg: its Stats (sponsor_*), the
// state store's Pebble metrics (sponsor_state_*, while Run has the store
// open), and
// the metrics of the Kafka clients Run builds (franz-go's kprom plugin,
// sponsor_kafka_*, labeled client=session, campaigns or admin; they appear
// once Run has built the clients, and go when it closes them). Call it
// once, before Run.
func (r *Runner) Register(reg prometheus.Registerer) error {
	if err := r.stats.Register(reg); err != nil {
		return err
	}
	if err := reg.Register(stateCollector{&r.view}); err != nil {
		return fmt.Errorf("register the state store's metrics: %w", err)
	}
	r.metrics = reg
	return nil
}

// kafkaMetrics returns the option that exports the metrics of the client
// named client, when Register gave the runner a registry.
func (r *Runner) kafkaMetrics(client string) []kgo.Opt {
	if r.metrics == nil {
		return nil
	}
	return []kgo.Opt{KafkaClientMetrics(lenientRegisterer{r.metrics, r.log}, client)}
}

// KafkaClientMetrics returns the option that exports a Kafka client's
// metrics on reg with franz-go's kprom plugin, as the runner does for each
// of its clients: named sponsor_kafka_* (KafkaMetricsNamespace), labeled
// client=client; produce and fetch counters (bytes, compressed bytes,
// batches, records) by topic; connections, bytes written and read, and
// request latency (sponsor_kafka_request_duration_e2e_seconds) by broker
// (node_id). The metrics are registered when the client is built and
// unregistered when it closes; two clients open at once on one registry
// need different names.
func KafkaClientMetrics(reg prometheus.Registerer, client string) kgo.Opt {
	return kgo.WithHooks(kprom.NewMetrics(KafkaMetricsNamespace,
		kprom.Registerer(reg),
		kprom.WithStaticLabel(prometheus.Labels{"client": client}),
		kprom.FetchAndProduceDetail(kprom.ByTopic, kprom.Batches, kprom.Records, kprom.UncompressedBytes, kprom.CompressedBytes, kprom.ConsistentNaming),
		kprom.Histograms(kprom.RequestDurationE2E),
	))
}

// lenientRegisterer logs, rather than panics, when kprom cannot register a
// client's metrics (a registry another runner with the same client names
// already uses): metrics are not worth stopping the pipeline for.
type lenientRegisterer struct {
	prometheus.Registerer
	log *slog.Logger
}

func (l lenientRegisterer) MustRegister(cs ...prometheus.Collector) {
	for _, c := range cs {
		if err := l.Register(c); err != nil {
			l.log.Warn("kafka client metrics not exported", "err", err)
		}
	}
}

// StoreCollector returns the collector of store's Pebble metrics
// (sponsor_state_*), the one Register adds for the runner's own store, for
// tools that hold a store of their own.
func StoreCollector(store *state.Store) prometheus.Collector {
	ref := &storeRef{}
	ref.set(store)
	return stateCollector{ref}
}

// stateCollector exports the Pebble metrics of the runner's state store,
// read at each scrape while Run has the store open (nothing otherwise):
// what an operator needs to tell the store's memory (block cache,
// memtables) from the Go heap's, and to see its compactions keep up.
type stateCollector struct{ ref *storeRef }

var (
	stateCacheBytes = prometheus.NewDesc("sponsor_state_block_cache_bytes",
		"Bytes of table blocks in the state store's block cache (Pebble). The memtables are reserved out of the cache's capacity besides (sponsor_state_memtable_bytes).", nil, nil)
	stateCacheCapacity = prometheus.NewDesc("sponsor_state_block_cache_capacity_bytes",
		"Configured size of the state store's block cache.", nil, nil)
	stateCacheHits = prometheus.NewDesc("sponsor_state_block_cache_hits_total",
		"Block cache hits of the state store's reads.", nil, nil)
	stateCacheMisses = prometheus.NewDesc("sponsor_state_block_cache_misses_total",
		"Block cache misses of the state store's reads (blocks read from the table files).", nil, nil)
	stateMemtableBytes = prometheus.NewDesc("sponsor_state_memtable_bytes",
		"Bytes allocated to the state store's memtables: the one being written and those waiting to be flushed.", nil, nil)
	stateMemtables = prometheus.NewDesc("sponsor_state_memtables",
		"Memtables of the state store: the one being written and those waiting to be flushed.", nil, nil)
	stateFlushes = prometheus.NewDesc("sponsor_state_flushes_total",
		"Memtable flushes of the state store.", nil, nil)
	stateCompactions = prometheus.NewDesc("sponsor_state_compactions_total",
		"Compactions of the state store.", nil, nil)
	stateCompactionsRunning = prometheus.NewDesc("sponsor_state_compactions_running",
		"Compactions of the state store in progress.", nil, nil)
	stateCompactionDebt = prometheus.NewDesc("sponsor_state_compaction_debt_bytes",
		"Bytes the state store estimates it must compact to bring its levels into shape; a debt that keeps growing means compactions do not keep up with the writes.", nil, nil)
	stateWritten = prometheus.NewDesc("sponsor_state_table_bytes_written_total",
		"Bytes of table files the state store wrote, by cause: flush (memtables) or compaction. Their sum over the bytes flushed is the write amplification.", []string{"cause"}, nil)
	stateLevelTables = prometheus.NewDesc("sponsor_state_level_tables",
		"Table files of the state store, by LSM level.", []string{"level"}, nil)
	stateLevelBytes = prometheus.NewDesc("sponsor_state_level_bytes",
		"Bytes of table files of the state store, by LSM level.", []string{"level"}, nil)
	stateL0Sublevels = prometheus.NewDesc("sponsor_state_l0_sublevels",
		"Sublevels of the state store's level 0: each is one more table a read may consult; Pebble stops the writes at 12 until compactions catch up.", nil, nil)
	stateFilter = prometheus.NewDesc("sponsor_state_bloom_filter_total",
		"Probes of the state store's table bloom filters, by result: skipped (the table cannot hold the key; a read saved) or passed.", []string{"result"}, nil)
	stateDiskBytes = prometheus.NewDesc("sponsor_state_disk_bytes",
		"Bytes the state store takes on disk.", nil, nil)
)

// Describe implements prometheus.Collector.
func (stateCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{
		stateCacheBytes, stateCacheCapacity, stateCacheHits, stateCacheMisses,
		stateMemtableBytes, stateMemtables, stateFlushes, stateCompactions,
		stateCompactionsRunning, stateCompactionDebt, stateWritten,
		stateLevelTables, stateLevelBytes, stateL0Sublevels, stateFilter, stateDiskBytes,
	} {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (c stateCollector) Collect(ch chan<- prometheus.Metric) {
	c.ref.with(func(s *state.Store) {
		m, capacity := s.Metrics()
		gauge := func(d *prometheus.Desc, v float64, labels ...string) {
			ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
		}
		counter := func(d *prometheus.Desc, v float64, labels ...string) {
			ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, v, labels...)
		}
		gauge(stateCacheBytes, float64(m.BlockCache.Size))
		gauge(stateCacheCapacity, float64(capacity))
		counter(stateCacheHits, float64(m.BlockCache.Hits))
		counter(stateCacheMisses, float64(m.BlockCache.Misses))
		gauge(stateMemtableBytes, float64(m.MemTable.Size))
		gauge(stateMemtables, float64(m.MemTable.Count))
		counter(stateFlushes, float64(m.Flush.Count))
		counter(stateCompactions, float64(m.Compact.Count))
		gauge(stateCompactionsRunning, float64(m.Compact.NumInProgress))
		gauge(stateCompactionDebt, float64(m.Compact.EstimatedDebt))
		total := m.Total()
		counter(stateWritten, float64(total.TableBytesFlushed), "flush")
		counter(stateWritten, float64(total.TableBytesCompacted), "compaction")
		for level, l := range m.Levels {
			gauge(stateLevelTables, float64(l.TablesCount), strconv.Itoa(level))
			gauge(stateLevelBytes, float64(l.TablesSize), strconv.Itoa(level))
		}
		gauge(stateL0Sublevels, float64(m.Levels[0].Sublevels))
		counter(stateFilter, float64(m.Filter.Hits), "skipped")
		counter(stateFilter, float64(m.Filter.Misses), "passed")
		gauge(stateDiskBytes, float64(m.DiskSpaceUsage()))
	})
}
