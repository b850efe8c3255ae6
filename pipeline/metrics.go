package pipeline

import (
	"log/slog"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/plugin/kprom"
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

// Register exports the runner's metrics on reg: its Stats (sponsor_*) and
// the metrics of the Kafka clients Run builds (franz-go's kprom plugin,
// sponsor_kafka_*, labeled client=session, campaigns or admin; they appear
// once Run has built the clients, and go when it closes them). Call it
// once, before Run.
func (r *Runner) Register(reg prometheus.Registerer) error {
	if err := r.stats.Register(reg); err != nil {
		return err
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
