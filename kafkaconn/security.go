package kafkaconn

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sasl/plain"
	"github.com/twmb/franz-go/pkg/sasl/scram"
	"github.com/twmb/franz-go/pkg/sr"
)

// SASL mechanisms accepted in Security.SASLMechanism.
const (
	SASLPlain       = "PLAIN"
	SASLScramSHA256 = "SCRAM-SHA-256"
	SASLScramSHA512 = "SCRAM-SHA-512"
)

// redacted replaces a secret wherever Security is printed, logged or
// marshaled.
const redacted = "[REDACTED]"

// Security is how the pipeline authenticates to Kafka and to the schema
// registry, and how it protects those connections. The zero value is
// plaintext, unauthenticated Kafka and registry (a local development
// cluster).
//
// Every secret may be given directly (from the environment, e.g.
// SPONSOR_SASL_PASSWORD) or as a file (the ...File field, e.g. a mounted
// Kubernetes Secret), never both. Files are read when the options are built
// (KafkaOpts, RegistryOpts: at start), and one trailing newline is trimmed.
//
// String, GoString, LogValue and MarshalJSON redact every secret, so a
// Security (or a Config holding one) can be printed and logged as is. This
// type is the one place that turns security settings into franz-go options.
type Security struct {
	// SASLMechanism is the SASL mechanism for Kafka: "PLAIN",
	// "SCRAM-SHA-256" or "SCRAM-SHA-512" (case-insensitive). Default empty:
	// no SASL. PLAIN sends the password as is: use it only with TLS.
	SASLMechanism string
	// SASLUser is the SASL user name. Required with SASLMechanism, invalid
	// without it. Not a secret: it is shown in logs. Default empty.
	SASLUser string
	// SASLPassword is the SASL password (secret). Exactly one of
	// SASLPassword and SASLPasswordFile is required with SASLMechanism.
	// Default empty.
	SASLPassword string
	// SASLPasswordFile is a file holding the SASL password; one trailing
	// newline is trimmed. Default empty.
	SASLPasswordFile string

	// TLS turns TLS on for the Kafka connections, verifying the brokers'
	// certificates against the system roots (or TLSCAFile). Default off;
	// setting any of TLSCAFile, TLSCertFile, TLSKeyFile or TLSServerName
	// turns it on too.
	TLS bool
	// TLSCAFile is a PEM file of the CA certificates that sign the brokers'
	// certificates, used instead of the system roots. Default empty: the
	// system roots.
	TLSCAFile string
	// TLSCertFile is the PEM client certificate for mutual TLS; requires
	// TLSKeyFile. Default empty: no client certificate.
	TLSCertFile string
	// TLSKeyFile is the PEM private key of TLSCertFile. Default empty.
	TLSKeyFile string
	// TLSServerName is the name expected in every broker's certificate.
	// Default empty: the host of the address dialed.
	TLSServerName string

	// RegistryUser is the schema registry's HTTP basic-auth user. Requires
	// RegistryPassword or RegistryPasswordFile. Default empty: no basic
	// auth.
	RegistryUser string
	// RegistryPassword is the basic-auth password (secret). Default empty.
	RegistryPassword string
	// RegistryPasswordFile is a file holding the basic-auth password; one
	// trailing newline is trimmed. Default empty.
	RegistryPasswordFile string
	// RegistryToken is a bearer token for the schema registry (secret),
	// sent as "Authorization: Bearer TOKEN"; exclusive with basic auth.
	// Default empty: no token.
	RegistryToken string
	// RegistryTokenFile is a file holding the bearer token; one trailing
	// newline is trimmed. Default empty.
	RegistryTokenFile string
	// RegistryCAFile is a PEM file of the CA certificates that sign an
	// https registry's certificate, used instead of the system roots.
	// Default empty: the system roots.
	RegistryCAFile string
}

// Validate reports every inconsistent field of s, by name. It does no I/O:
// a file that cannot be read is reported by KafkaOpts or RegistryOpts.
func (s *Security) Validate() error {
	var errs []error
	mech := strings.ToUpper(s.SASLMechanism)
	switch mech {
	case "":
		if s.SASLUser != "" || s.SASLPassword != "" || s.SASLPasswordFile != "" {
			errs = append(errs, errors.New("Security.SASLUser, SASLPassword, SASLPasswordFile: set without Security.SASLMechanism (--sasl-mechanism PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512)"))
		}
	case SASLPlain, SASLScramSHA256, SASLScramSHA512:
		if s.SASLUser == "" {
			errs = append(errs, fmt.Errorf("Security.SASLUser: required with SASL mechanism %s (--sasl-user)", mech))
		}
		if s.SASLPassword == "" && s.SASLPasswordFile == "" {
			errs = append(errs, fmt.Errorf("Security.SASLPassword: required with SASL mechanism %s (--sasl-password or --sasl-password-file)", mech))
		}
	default:
		errs = append(errs, fmt.Errorf("Security.SASLMechanism: want PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512, got %q", s.SASLMechanism))
	}
	if s.SASLPassword != "" && s.SASLPasswordFile != "" {
		errs = append(errs, errors.New("Security.SASLPassword, SASLPasswordFile: give one, not both"))
	}
	if (s.TLSCertFile == "") != (s.TLSKeyFile == "") {
		errs = append(errs, errors.New("Security.TLSCertFile, TLSKeyFile: a client certificate needs both (--tls-cert-file, --tls-key-file)"))
	}
	if s.RegistryPassword != "" && s.RegistryPasswordFile != "" {
		errs = append(errs, errors.New("Security.RegistryPassword, RegistryPasswordFile: give one, not both"))
	}
	basic := s.RegistryPassword != "" || s.RegistryPasswordFile != ""
	if s.RegistryUser != "" && !basic {
		errs = append(errs, errors.New("Security.RegistryPassword: required with Security.RegistryUser (--registry-password or --registry-password-file)"))
	}
	if s.RegistryUser == "" && basic {
		errs = append(errs, errors.New("Security.RegistryUser: required with a registry password (--registry-user)"))
	}
	if s.RegistryToken != "" && s.RegistryTokenFile != "" {
		errs = append(errs, errors.New("Security.RegistryToken, RegistryTokenFile: give one, not both"))
	}
	if (s.RegistryUser != "" || basic) && (s.RegistryToken != "" || s.RegistryTokenFile != "") {
		errs = append(errs, errors.New("Security.RegistryToken: a bearer token and basic auth (Security.RegistryUser) are exclusive"))
	}
	return errors.Join(errs...)
}

// kafkaTLS reports whether the Kafka connections use TLS.
func (s *Security) kafkaTLS() bool {
	return s.TLS || s.TLSCAFile != "" || s.TLSCertFile != "" || s.TLSKeyFile != "" || s.TLSServerName != ""
}

// KafkaOpts returns the franz-go options for TLS and SASL to the brokers
// (none for the zero Security), reading the secret and certificate files.
// Errors name the field and the file, never a secret.
func (s *Security) KafkaOpts() ([]kgo.Opt, error) {
	if err := s.Validate(); err != nil {
		return nil, err
	}
	var opts []kgo.Opt
	if s.kafkaTLS() {
		tc, err := tlsConfig("Security.TLSCAFile", s.TLSCAFile, s.TLSCertFile, s.TLSKeyFile)
		if err != nil {
			return nil, err
		}
		// An empty ServerName makes franz-go verify each broker against
		// the host it dials.
		tc.ServerName = s.TLSServerName
		opts = append(opts, kgo.DialTLSConfig(tc))
	}
	mech := strings.ToUpper(s.SASLMechanism)
	if mech == "" {
		return opts, nil
	}
	pass, err := secret("Security.SASLPassword", s.SASLPassword, s.SASLPasswordFile)
	if err != nil {
		return nil, err
	}
	switch mech {
	case SASLPlain:
		opts = append(opts, kgo.SASL(plain.Auth{User: s.SASLUser, Pass: pass}.AsMechanism()))
	case SASLScramSHA256:
		opts = append(opts, kgo.SASL(scram.Auth{User: s.SASLUser, Pass: pass}.AsSha256Mechanism()))
	case SASLScramSHA512:
		opts = append(opts, kgo.SASL(scram.Auth{User: s.SASLUser, Pass: pass}.AsSha512Mechanism()))
	}
	return opts, nil
}

// RegistryOpts returns the schema registry client options for basic auth or
// a bearer token and for a private CA (none for the zero Security), reading
// the secret and certificate files. The registry's URL is not among them.
func (s *Security) RegistryOpts() ([]sr.ClientOpt, error) {
	if err := s.Validate(); err != nil {
		return nil, err
	}
	var opts []sr.ClientOpt
	if s.RegistryCAFile != "" {
		tc, err := tlsConfig("Security.RegistryCAFile", s.RegistryCAFile, "", "")
		if err != nil {
			return nil, err
		}
		tr := http.DefaultTransport.(*http.Transport).Clone()
		tr.TLSClientConfig = tc
		// The same timeout as sr's default client.
		opts = append(opts, sr.HTTPClient(&http.Client{Transport: tr, Timeout: 5 * time.Second}))
	}
	if s.RegistryUser != "" {
		pass, err := secret("Security.RegistryPassword", s.RegistryPassword, s.RegistryPasswordFile)
		if err != nil {
			return nil, err
		}
		opts = append(opts, sr.BasicAuth(s.RegistryUser, pass))
	}
	if s.RegistryToken != "" || s.RegistryTokenFile != "" {
		tok, err := secret("Security.RegistryToken", s.RegistryToken, s.RegistryTokenFile)
		if err != nil {
			return nil, err
		}
		opts = append(opts, sr.BearerToken(tok))
	}
	return opts, nil
}

// secret returns value, or the content of file without its trailing
// newline. The error names field and file, never the content.
func secret(field, value, file string) (string, error) {
	if file == "" {
		return value, nil
	}
	b, err := os.ReadFile(file)
	if err != nil {
		return "", fmt.Errorf("%sFile: %w", field, err)
	}
	v := strings.TrimSuffix(strings.TrimSuffix(string(b), "\n"), "\r")
	if v == "" {
		return "", fmt.Errorf("%sFile: %s is empty", field, file)
	}
	return v, nil
}

// tlsConfig returns a client TLS config trusting the CAs of caFile (the
// system roots if empty) and presenting the certificate of certFile and
// keyFile, if given.
func tlsConfig(caField, caFile, certFile, keyFile string) (*tls.Config, error) {
	tc := &tls.Config{MinVersion: tls.VersionTLS12}
	if caFile != "" {
		pem, err := os.ReadFile(caFile)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", caField, err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("%s: no PEM certificate in %s", caField, caFile)
		}
		tc.RootCAs = pool
	}
	if certFile != "" {
		// The error of LoadX509KeyPair names what failed, not the key.
		cert, err := tls.LoadX509KeyPair(certFile, keyFile)
		if err != nil {
			return nil, fmt.Errorf("Security.TLSCertFile, TLSKeyFile: load %s and %s: %w", certFile, keyFile, err)
		}
		tc.Certificates = []tls.Certificate{cert}
	}
	return tc, nil
}

// Redacted returns a copy of s with every secret value replaced by
// "[REDACTED]" (an empty secret stays empty, so one can see what is set).
// File names are kept: they are not secrets.
func (s Security) Redacted() Security {
	for _, p := range []*string{&s.SASLPassword, &s.RegistryPassword, &s.RegistryToken} {
		if *p != "" {
			*p = redacted
		}
	}
	return s
}

// String describes s with its secrets redacted.
func (s Security) String() string {
	r := s.Redacted()
	return fmt.Sprintf("{SASLMechanism:%s SASLUser:%s SASLPassword:%s SASLPasswordFile:%s TLS:%t TLSCAFile:%s TLSCertFile:%s TLSKeyFile:%s TLSServerName:%s RegistryUser:%s RegistryPassword:%s RegistryPasswordFile:%s RegistryToken:%s RegistryTokenFile:%s RegistryCAFile:%s}",
		r.SASLMechanism, r.SASLUser, r.SASLPassword, r.SASLPasswordFile, r.kafkaTLS(), r.TLSCAFile, r.TLSCertFile, r.TLSKeyFile, r.TLSServerName,
		r.RegistryUser, r.RegistryPassword, r.RegistryPasswordFile, r.RegistryToken, r.RegistryTokenFile, r.RegistryCAFile)
}

// GoString is String, so that %#v redacts too.
func (s Security) GoString() string { return "kafkaconn.Security" + s.String() }

// LogValue logs what is configured (mechanism, user, TLS, which secrets
// are set and from where), never a secret.
func (s Security) LogValue() slog.Value {
	r := s.Redacted()
	attrs := []slog.Attr{slog.Bool("tls", r.kafkaTLS())}
	add := func(k, v string) {
		if v != "" {
			attrs = append(attrs, slog.String(k, v))
		}
	}
	add("tls_ca_file", r.TLSCAFile)
	add("tls_cert_file", r.TLSCertFile)
	add("tls_key_file", r.TLSKeyFile)
	add("tls_server_name", r.TLSServerName)
	add("sasl_mechanism", strings.ToUpper(r.SASLMechanism))
	add("sasl_user", r.SASLUser)
	add("sasl_password", r.SASLPassword)
	add("sasl_password_file", r.SASLPasswordFile)
	add("registry_user", r.RegistryUser)
	add("registry_password", r.RegistryPassword)
	add("registry_password_file", r.RegistryPasswordFile)
	add("registry_token", r.RegistryToken)
	add("registry_token_file", r.RegistryTokenFile)
	add("registry_ca_file", r.RegistryCAFile)
	return slog.GroupValue(attrs...)
}

// MarshalJSON marshals s with its secrets redacted (a JSON log handler or
// a printed config must not leak them). Unmarshaling is the default one.
func (s Security) MarshalJSON() ([]byte, error) {
	type plainSecurity Security // no methods: no recursion
	return json.Marshal(plainSecurity(s.Redacted()))
}
