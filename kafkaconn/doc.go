// Package kafkaconn turns the connection settings every part of the project
// shares (TLS and SASL to Kafka, authentication and TLS to the schema
// registry) into franz-go client options, in one place, and holds the one
// read-committed reader ([Reader], [ReadCommitted]): a topic, or some of its
// partitions, read whole the way a downstream consumer sees it, up to the
// last stable offsets of the moment the read begins. The restore, the
// operator tools and the tests all read that way through it.
//
// It knows nothing of the pipeline, so the operator tools can connect and
// read the way `sponsor run` does without importing the runtime.
package kafkaconn
