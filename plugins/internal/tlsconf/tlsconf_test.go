package tlsconf

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestValidateAndBuild(t *testing.T) {
	if err := (Config{}).Validate("tls"); err != nil {
		t.Fatalf("TLS off: %v", err)
	}
	if tc, err := (Config{}).Build(); tc != nil || err != nil {
		t.Fatalf("TLS off built %v %v", tc, err)
	}
	err := Config{Enable: true, CertFile: "/nonexistent/c.pem", CAFile: "/nonexistent/ca.pem"}.Validate("sinks.x.tls")
	for _, want := range []string{"sinks.x.tls.cert_file, sinks.x.tls.key_file: give both or neither",
		"sinks.x.tls.ca_file: stat /nonexistent/ca.pem", "sinks.x.tls.cert_file: stat /nonexistent/c.pem"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q: %v", want, err)
		}
	}
	notPEM := filepath.Join(t.TempDir(), "ca.pem")
	os.WriteFile(notPEM, []byte("hello"), 0o600)
	if _, err := (Config{Enable: true, CAFile: notPEM}).Build(); err == nil || !strings.Contains(err.Error(), "holds no PEM certificate") {
		t.Fatalf("Build with a non-PEM CA: %v", err)
	}
	tc, err := Config{Enable: true, ServerName: "redis.internal"}.Build()
	if err != nil || tc.ServerName != "redis.internal" || tc.MinVersion == 0 {
		t.Fatalf("built %+v, %v", tc, err)
	}
}
