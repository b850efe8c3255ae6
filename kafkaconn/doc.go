// Package kafkaconn turns the connection settings every part of the project
// shares (TLS and SASL to Kafka, authentication and TLS to the schema
// registry) into franz-go client options, in one place. It knows nothing of
// the pipeline, so the operator tools can connect the way `sponsor run` does
// without importing the runtime.
package kafkaconn
