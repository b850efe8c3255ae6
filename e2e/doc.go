// Package e2e holds the end-to-end tests of the pipeline: an in-process
// Kafka (kfake) and schema registry (srfake), a seeded history of
// interactions and campaigns, and an oracle that derives the expected inbox
// from the rules of DESIGN.md independently of policy. The tests
// run the pipeline in-process and as the sponsor binary (killed and
// restarted), and compare the inbox, read with read_committed, record by
// record with the oracle.
//
// The package has no non-test code; this file only carries the doc.
package e2e
