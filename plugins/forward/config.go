package forward

import (
	_ "embed"
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/sluicehq/sluice/plugins/internal/tlsconf"
	"github.com/sluicehq/sluice/plugins/internal/units"
)

// SinkSampleConfig and SourceSampleConfig are the documented samples of a
// forward [sinks.NAME] and [sources.NAME] config table; the README shows
// them and a test decodes and validates them.
var (
	//go:embed sample_sink.toml
	SinkSampleConfig string
	//go:embed sample_source.toml
	SourceSampleConfig string
)

// SinkConfig is the forward sink's configuration (the sending agent).
type SinkConfig struct {
	// Address is the receiving agent's forward source, host:port.
	Address string `toml:"address"`
	// ConnectTimeout bounds dialing (and the TLS handshake).
	ConnectTimeout units.Duration `toml:"connect_timeout"`
	// AckTimeout is how long a sent batch waits for its acknowledgement.
	// Past it the batch is in doubt: the sink hangs up and the runner sends
	// it again, which the receiver's fence makes harmless.
	AckTimeout units.Duration `toml:"ack_timeout"`
	// InstanceID names this agent to receivers; with the input stream it is
	// the sender id they fence by. Empty: a random id created once in the
	// stage's data directory. Two agents must never share one.
	InstanceID string         `toml:"instance_id"`
	TLS        tlsconf.Config `toml:"tls"`
}

// SourceConfig is the forward source's configuration (the receiving agent).
type SourceConfig struct {
	// Listen is the host:port to accept forward sinks on.
	Listen string `toml:"listen"`
	// MaxFrameBytes bounds one received batch; a bigger frame is refused
	// with an error naming both sizes.
	MaxFrameBytes units.Size     `toml:"max_frame_bytes"`
	TLS           tlsconf.Server `toml:"tls"`
}

// DefaultSinkConfig returns the defaults that apply to keys a file leaves out.
func DefaultSinkConfig() SinkConfig {
	return SinkConfig{ConnectTimeout: units.Of(5 * time.Second), AckTimeout: units.Of(30 * time.Second)}
}

// DefaultSourceConfig returns the defaults that apply to keys a file leaves out.
func DefaultSourceConfig() SourceConfig {
	return SourceConfig{Listen: "0.0.0.0:7070", MaxFrameBytes: units.Bytes(64 << 20)}
}

// Validate reports every problem of c at once, each prefixed with its key.
func (c SinkConfig) Validate() error {
	var errs []error
	if c.Address == "" {
		errs = append(errs, errors.New(`address: is required (e.g. address = "collector-1:7070")`))
	} else if _, _, err := net.SplitHostPort(c.Address); err != nil {
		errs = append(errs, fmt.Errorf("address: %q is not host:port: %v", c.Address, err))
	}
	errs = append(errs, c.ConnectTimeout.Positive("connect_timeout"), c.AckTimeout.Positive("ack_timeout")) // errors.Join drops the nils
	if c.InstanceID != "" && len(c.InstanceID) > 200 {
		errs = append(errs, fmt.Errorf("instance_id: %d characters, at most 200", len(c.InstanceID)))
	}
	if err := c.TLS.Validate("tls"); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// Validate reports every problem of c at once, each prefixed with its key.
func (c SourceConfig) Validate() error {
	var errs []error
	if c.Listen == "" {
		errs = append(errs, errors.New(`listen: is required (e.g. listen = "0.0.0.0:7070")`))
	} else if _, _, err := net.SplitHostPort(c.Listen); err != nil {
		errs = append(errs, fmt.Errorf("listen: %q is not host:port: %v", c.Listen, err))
	}
	if err := c.MaxFrameBytes.Err(); err != nil {
		errs = append(errs, fmt.Errorf("max_frame_bytes: %v", err))
	} else if c.MaxFrameBytes.Bytes < 4096 || c.MaxFrameBytes.Bytes > 1<<30 {
		errs = append(errs, fmt.Errorf("max_frame_bytes: %s is outside 4KiB..1GiB", units.FormatSize(c.MaxFrameBytes.Bytes)))
	}
	if err := c.TLS.Validate("tls"); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}
