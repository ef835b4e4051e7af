// Package tlsconf is the TLS part of network plugin configs (kafka, redis):
// the TOML table, its validation with key paths, and the *tls.Config.
package tlsconf

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
)

// Config is a [*.config.tls] table. The zero value means plain TCP.
type Config struct {
	// Enable turns TLS on; the other keys are ignored without it.
	Enable bool `toml:"enable"`
	// CAFile verifies the server with these PEM roots instead of the system's.
	CAFile string `toml:"ca_file"`
	// CertFile and KeyFile are a client certificate, for mutual TLS.
	CertFile string `toml:"cert_file"`
	KeyFile  string `toml:"key_file"`
	// ServerName overrides the name checked in the server certificate.
	ServerName string `toml:"server_name"`
	// InsecureSkipVerify accepts any server certificate: tests only.
	InsecureSkipVerify bool `toml:"insecure_skip_verify"`
}

// Validate reports every problem, each prefixed with prefix (e.g. "tls").
func (c Config) Validate(prefix string) error {
	if !c.Enable {
		return nil
	}
	var errs []error
	if (c.CertFile == "") != (c.KeyFile == "") {
		errs = append(errs, fmt.Errorf("%s.cert_file, %s.key_file: give both or neither", prefix, prefix))
	}
	for _, f := range []struct{ key, path string }{{"ca_file", c.CAFile}, {"cert_file", c.CertFile}, {"key_file", c.KeyFile}} {
		if f.path == "" {
			continue
		}
		if _, err := os.Stat(f.path); err != nil {
			errs = append(errs, fmt.Errorf("%s.%s: %v", prefix, f.key, err))
		}
	}
	return errors.Join(errs...)
}

// Build returns the client TLS config, or nil when TLS is off.
func (c Config) Build() (*tls.Config, error) {
	if !c.Enable {
		return nil, nil
	}
	tc := &tls.Config{ServerName: c.ServerName, InsecureSkipVerify: c.InsecureSkipVerify, MinVersion: tls.VersionTLS12}
	if c.CAFile != "" {
		pem, err := os.ReadFile(c.CAFile)
		if err != nil {
			return nil, fmt.Errorf("tls.ca_file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("tls.ca_file: %s holds no PEM certificate", c.CAFile)
		}
		tc.RootCAs = pool
	}
	if c.CertFile != "" {
		cert, err := tls.LoadX509KeyPair(c.CertFile, c.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("tls.cert_file/key_file: %w", err)
		}
		tc.Certificates = []tls.Certificate{cert}
	}
	return tc, nil
}
