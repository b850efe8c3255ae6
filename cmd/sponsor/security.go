package main

import (
	"flag"

	"github.com/sponsored/sponsor/kafkaconn"
)

// registerSecurity registers the TLS, SASL and registry-authentication flags
// into f.cfg.Security. Like every flag they are also read from SPONSOR_<NAME>
// (SPONSOR_SASL_PASSWORD): prefer that, or a ...-file flag, to a secret on the
// command line, where other users of the host can see it.
func (f *pipelineFlags) registerSecurity(fs *flag.FlagSet) {
	registerSecurity(fs, &f.cfg.Security)
}

// registerSecurity registers every security flag of `sponsor run` into s:
// Kafka's (registerKafkaSecurity) and the schema registry's
// (registerRegistrySecurity). The tools share them through clientFlags.
func registerSecurity(fs *flag.FlagSet, s *kafkaconn.Security) {
	registerKafkaSecurity(fs, s)
	registerRegistrySecurity(fs, s)
}

// registerKafkaSecurity registers the TLS and SASL flags of the Kafka
// connections into s.
func registerKafkaSecurity(fs *flag.FlagSet, s *kafkaconn.Security) {
	fs.StringVar(&s.SASLMechanism, "sasl-mechanism", "", "Kafka SASL mechanism: PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512 (empty: no SASL)")
	fs.StringVar(&s.SASLUser, "sasl-user", "", "Kafka SASL user")
	fs.StringVar(&s.SASLPassword, "sasl-password", "", "Kafka SASL password (prefer SPONSOR_SASL_PASSWORD or --sasl-password-file)")
	fs.StringVar(&s.SASLPasswordFile, "sasl-password-file", "", "file holding the Kafka SASL password (trailing newline trimmed)")
	fs.BoolVar(&s.TLS, "tls", false, "connect to Kafka with TLS (implied by the other --tls-* flags)")
	fs.StringVar(&s.TLSCAFile, "tls-ca-file", "", "PEM file of the CAs of the brokers' certificates (default: system roots)")
	fs.StringVar(&s.TLSCertFile, "tls-cert-file", "", "PEM client certificate for mutual TLS to Kafka (with --tls-key-file)")
	fs.StringVar(&s.TLSKeyFile, "tls-key-file", "", "PEM private key of --tls-cert-file")
	fs.StringVar(&s.TLSServerName, "tls-server-name", "", "name expected in the brokers' certificates (default: the host dialed)")
}

// registerRegistrySecurity registers the authentication and TLS flags of the
// schema registry into s.
func registerRegistrySecurity(fs *flag.FlagSet, s *kafkaconn.Security) {
	fs.StringVar(&s.RegistryUser, "registry-user", "", "schema registry basic-auth user")
	fs.StringVar(&s.RegistryPassword, "registry-password", "", "schema registry basic-auth password (prefer SPONSOR_REGISTRY_PASSWORD or --registry-password-file)")
	fs.StringVar(&s.RegistryPasswordFile, "registry-password-file", "", "file holding the schema registry basic-auth password")
	fs.StringVar(&s.RegistryToken, "registry-token", "", "schema registry bearer token (prefer SPONSOR_REGISTRY_TOKEN or --registry-token-file)")
	fs.StringVar(&s.RegistryTokenFile, "registry-token-file", "", "file holding the schema registry bearer token")
	fs.StringVar(&s.RegistryCAFile, "registry-ca-file", "", "PEM file of the CAs of an https registry's certificate (default: system roots)")
}
