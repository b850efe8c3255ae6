# Two commands on a fresh machine: `make run` and `make test`.
GO      ?= go
BIN     := bin/sponsor
DATA    ?= data

.PHONY: run build test test-short test-kafka bench bench-scale bench-campaigns plots vet kafka-up kafka-down kafka-cluster-up kafka-cluster-down external-clients clean

## run: the embedded default (in-process Kafka + schema registry, the pipeline, a demo workload); data kept in ./data
run: build
	./$(BIN) dev --demo --data $(DATA)

## build: the sponsor binary in bin/
build:
	$(GO) build -o $(BIN) ./cmd/sponsor

## test: every test, on the in-process Kafka (no Java needed); lists the tests it skipped and how to run them
test:
	$(GO) vet ./...
	$(GO) test -count=1 -timeout 15m -json ./... | $(GO) run ./tools/testsummary

## test-short: the quick tests only
test-short:
	$(GO) test -short -count=1 -json ./... | $(GO) run ./tools/testsummary

## test-kafka: the end-to-end suite and the stuck-transaction drill (txn) against a real Apache Kafka started by deploy/kafka
test-kafka: kafka-up
	KAFKA_BROKERS=127.0.0.1:9092 $(GO) test -count=1 -timeout 30m -v ./ops/txn/ ./e2e/

## bench: Go benchmarks of the hot paths, then the end-to-end ones (steady state, fan-out, restore) on kfake,
##        or on a real Kafka with KAFKA_BROKERS=host:port; sizes: BENCH_INTERACTIONS, BENCH_CONTACTS (default 1M each)
bench:
	$(GO) test -run '^$$' -bench . -benchmem -benchtime 500ms -count 1 $$($(GO) list ./... | grep -v /e2e)
	$(GO) test -run '^$$' -bench '^Benchmark(SteadyState|Fanout|Restore)$$' -benchtime 1x -count 1 -timeout 20m ./e2e/ \
		-bench.interactions $${BENCH_INTERACTIONS:-1000000} -bench.contacts $${BENCH_CONTACTS:-1000000}

## bench-scale: sponsor run as its own process on the local Apache Kafka (make kafka-up): 10M contacts
##              (ingest, peak RSS), a 1M fan-out, restore to /readyz, 1-3 instances; writes CSVs to
##              BENCH_OUT (default bench-out/), then draws docs/img/*.png from them (make plots)
BENCH_OUT ?= bench-out
bench-scale:
	mkdir -p $(BENCH_OUT)
	BENCH_OUT=$(abspath $(BENCH_OUT)) KAFKA_BROKERS=$${KAFKA_BROKERS:-127.0.0.1:9092} \
		$(GO) test -run '^$$' -bench '^BenchmarkScale$$' -benchtime 1x -count 1 -timeout 60m ./e2e/
	$(MAKE) plots

## bench-campaigns: e2e.BenchmarkManyCampaigns (issue 16): `sponsor run` as its own process under a stream of campaigns
##                  (200k contacts of 5,000 businesses + one of 100k, 6,000 campaigns at 200/s, start-up over 20k
##                  past campaigns; about 2 min a binary on kfake). BENCH_SPONSOR_BASE=PATH adds a second binary,
##                  run interleaved with this tree's; BENCH_ROUNDS rounds; KAFKA_BROKERS for a real Kafka; sizes:
##                  BENCH_CAMP_CONTACTS, BENCH_CAMP_BUSINESSES, BENCH_CAMP_LARGE, BENCH_CAMP_CAMPAIGNS, BENCH_CAMP_RATE, BENCH_CAMP_PAST
bench-campaigns:
	$(GO) test -run '^$$' -v -bench '^BenchmarkManyCampaigns$$' -benchtime 1x -count 1 -timeout 120m ./e2e/ \
		$(if $(BENCH_SPONSOR_BASE),-bench.sponsor-base $(BENCH_SPONSOR_BASE))

## plots: docs/img/throughput.png and fanout-latency.png from BENCH_OUT's CSVs (tools/benchplot, gonum/plot)
plots:
	cd tools/benchplot && $(GO) run . -in $(abspath $(BENCH_OUT)) -out $(abspath docs/img)

## kafka-up / kafka-down: a single-node Apache Kafka (KRaft) on 127.0.0.1:9092, from the Maven Central jars
kafka-up:
	deploy/kafka/install.sh
	deploy/kafka/up.sh

kafka-down:
	deploy/kafka/down.sh --wipe

## kafka-cluster-up / kafka-cluster-down: a three-node Apache Kafka cluster for broker-failure tests
kafka-cluster-up:
	deploy/kafka/install.sh
	deploy/kafka/cluster-up.sh

kafka-cluster-down:
	deploy/kafka/cluster-down.sh --wipe

PYVENV ?= $(HOME)/.cache/sponsor/pyvenv
## external-clients: kcat (Debian) and a Python venv with confluent-kafka, for e2e.TestExternalClients
external-clients:
	command -v kcat >/dev/null || (apt-get update -qq && apt-get install -y -qq kcat)
	test -x $(PYVENV)/bin/python || python3 -m venv $(PYVENV)
	$(PYVENV)/bin/pip install -q --disable-pip-version-check -r e2e/external/requirements.txt
	@echo "export SPONSOR_PYTHON=$(PYVENV)/bin/python"

clean:
	rm -rf bin $(DATA)
