// Package tlsconf is the TLS part of network plugin configs: the TOML
// tables of a client (kafka, redis, the forward sink) and of a server (the
// forward source), their validation with key paths, and the *tls.Config.
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
	errs = append(errs, statFiles(prefix, file{"ca_file", c.CAFile}, file{"cert_file", c.CertFile}, file{"key_file", c.KeyFile})...)
	return errors.Join(errs...)
}

// Build returns the client TLS config, or nil when TLS is off.
func (c Config) Build() (*tls.Config, error) {
	if !c.Enable {
		return nil, nil
	}
	tc := &tls.Config{ServerName: c.ServerName, InsecureSkipVerify: c.InsecureSkipVerify, MinVersion: tls.VersionTLS12}
	if c.CAFile != "" {
		pool, err := loadPool("tls.ca_file", c.CAFile)
		if err != nil {
			return nil, err
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

// Server is a server's [*.config.tls] table (the forward source). The zero
// value means plain TCP.
type Server struct {
	Enable bool `toml:"enable"`
	// CertFile and KeyFile are the server's certificate and key (PEM).
	CertFile string `toml:"cert_file"`
	KeyFile  string `toml:"key_file"`
	// ClientCAFile, when set, requires every client to present a
	// certificate signed by one of these PEM roots (mutual TLS).
	ClientCAFile string `toml:"client_ca_file"`
}

// Validate reports every problem, each prefixed with prefix (e.g. "tls").
func (c Server) Validate(prefix string) error {
	if !c.Enable {
		return nil
	}
	var errs []error
	if c.CertFile == "" || c.KeyFile == "" {
		errs = append(errs, fmt.Errorf("%s.cert_file, %s.key_file: both are required when %s.enable = true", prefix, prefix, prefix))
	}
	errs = append(errs, statFiles(prefix, file{"cert_file", c.CertFile}, file{"key_file", c.KeyFile}, file{"client_ca_file", c.ClientCAFile})...)
	return errors.Join(errs...)
}

// Build returns the server TLS config, or nil when TLS is off.
func (c Server) Build() (*tls.Config, error) {
	if !c.Enable {
		return nil, nil
	}
	cert, err := tls.LoadX509KeyPair(c.CertFile, c.KeyFile)
	if err != nil {
		return nil, fmt.Errorf("tls.cert_file/key_file: %w", err)
	}
	tc := &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	if c.ClientCAFile != "" {
		pool, err := loadPool("tls.client_ca_file", c.ClientCAFile)
		if err != nil {
			return nil, err
		}
		tc.ClientCAs = pool
		tc.ClientAuth = tls.RequireAndVerifyClientCert
	}
	return tc, nil
}

// file is a key of a tls table naming a file.
type file struct{ key, path string }

// statFiles reports each named file that cannot be found, under its key:
// at validation, so that a typo shows before the stage starts.
func statFiles(prefix string, files ...file) []error {
	var errs []error
	for _, f := range files {
		if f.path == "" {
			continue
		}
		if _, err := os.Stat(f.path); err != nil {
			errs = append(errs, fmt.Errorf("%s.%s: %v", prefix, f.key, err))
		}
	}
	return errs
}

// loadPool reads the PEM roots of path; key names it in errors.
func loadPool(key, path string) (*x509.CertPool, error) {
	pem, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", key, err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("%s: %s holds no PEM certificate", key, path)
	}
	return pool, nil
}
