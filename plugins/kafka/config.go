package kafka

import (
	"crypto/sha256"
	"crypto/sha512"
	_ "embed"
	"errors"
	"fmt"
	"time"

	"github.com/IBM/sarama"

	"github.com/sluicehq/sluice/plugins/internal/tlsconf"
	"github.com/sluicehq/sluice/plugins/internal/units"
)

// SinkSampleConfig and SourceSampleConfig are the documented samples of a
// kafka [sinks.NAME] and [sources.NAME] table; the README shows them and a
// test decodes and validates them.
var (
	//go:embed sample_sink.toml
	SinkSampleConfig string
	//go:embed sample_source.toml
	SourceSampleConfig string
)

// Conn is how to reach and authenticate to the cluster; source and sink
// share it.
type Conn struct {
	// Brokers are seed brokers, host:port.
	Brokers []string `toml:"brokers"`
	// ClientID names this client in broker logs and quotas.
	ClientID string `toml:"client_id"`
	// Version is the Kafka protocol version to speak ("" = sarama's
	// default, which every broker since 2.1 understands).
	Version string `toml:"version"`
	// DialTimeout bounds connecting to a broker.
	DialTimeout units.Duration `toml:"dial_timeout"`
	SASL        SASL           `toml:"sasl"`
	TLS         tlsconf.Config `toml:"tls"`
}

// SASL is the [*.config.sasl] table.
type SASL struct {
	// Mechanism: "" (none), "PLAIN", "SCRAM-SHA-256" or "SCRAM-SHA-512".
	Mechanism string `toml:"mechanism"`
	Username  string `toml:"username"`
	Password  string `toml:"password"`
}

// SinkConfig is the kafka sink's configuration.
type SinkConfig struct {
	Conn
	// Topic receives every event.
	Topic string `toml:"topic"`
	// Compression: none, gzip, snappy, lz4 or zstd.
	Compression string `toml:"compression"`
	// MaxMessageBytes: a bigger event is rejected to the dead-letter
	// channel (it would never fit).
	MaxMessageBytes units.Size `toml:"max_message_bytes"`
	// FlushBytes, FlushMessages and Linger shape the producer's batches.
	FlushBytes    units.Size     `toml:"flush_bytes"`
	FlushMessages int            `toml:"flush_messages"`
	Linger        units.Duration `toml:"linger"`
	// Timeout bounds one produce request (the broker's wait for acks=all).
	Timeout units.Duration `toml:"timeout"`
	// Retries inside the producer before a message fails; the runner then
	// retries the whole batch with backoff.
	Retries int `toml:"retries"`
	// InstanceID names this agent in the sluice.producer header that lets
	// the kafka source drop re-sent duplicates. Empty: a random id created
	// once in the stage's data directory.
	InstanceID string `toml:"instance_id"`
}

// SourceConfig is the kafka source's configuration.
type SourceConfig struct {
	Conn
	// Topics to consume.
	Topics []string `toml:"topics"`
	// Group is the consumer group; agents of one group split the partitions.
	Group string `toml:"group"`
	// StartAt, for a partition with no position of ours and no group
	// commit: "earliest" or "latest".
	StartAt string `toml:"start_at"`
	// SessionTimeout, HeartbeatInterval and RebalanceTimeout are the group
	// membership timers. A rebalance waits for the in-flight batch to be
	// durable and committed, within RebalanceTimeout.
	SessionTimeout    units.Duration `toml:"session_timeout"`
	HeartbeatInterval units.Duration `toml:"heartbeat_interval"`
	RebalanceTimeout  units.Duration `toml:"rebalance_timeout"`
	// MaxWait is how long a fetch waits for data on the broker.
	MaxWait units.Duration `toml:"max_wait"`
	// MaxBatchBytes bounds one batch's bodies.
	MaxBatchBytes units.Size `toml:"max_batch_bytes"`
	// StaticMembership joins the group with a fixed group.instance.id
	// (KIP-345): an agent that restarts within session_timeout gets its
	// partitions back without a rebalance and resumes them from its own
	// positions, so no other member re-processes its last batch.
	StaticMembership bool `toml:"static_membership"`
	// InstanceID is this agent's group.instance.id (prefixed "sluice-").
	// Empty: a random id created once in the stage's data directory. Two
	// agents must never share one. It also names this member in the claim
	// ledger.
	InstanceID string `toml:"instance_id"`
	// Claims is the claim ledger in Redis (off by default): with two or
	// more members in the group, it keeps a batch from being counted twice
	// when its member dies between the durable append and the group commit
	// and the partition moves (docs/adr/0007).
	Claims ClaimsConfig `toml:"claims"`
}

func defaultConn() Conn {
	return Conn{Brokers: []string{"127.0.0.1:9092"}, ClientID: "sluice", DialTimeout: units.Of(10 * time.Second)}
}

// DefaultSinkConfig returns the defaults that apply to keys a file leaves out.
func DefaultSinkConfig() SinkConfig {
	return SinkConfig{
		Conn: defaultConn(), Compression: "lz4",
		MaxMessageBytes: units.Bytes(1 << 20), FlushBytes: units.Bytes(1 << 20), FlushMessages: 10000,
		Linger: units.Of(5 * time.Millisecond), Timeout: units.Of(10 * time.Second), Retries: 5,
	}
}

// DefaultSourceConfig returns the defaults that apply to keys a file leaves out.
func DefaultSourceConfig() SourceConfig {
	return SourceConfig{
		Conn: defaultConn(), StartAt: "earliest",
		SessionTimeout: units.Of(10 * time.Second), HeartbeatInterval: units.Of(3 * time.Second),
		RebalanceTimeout: units.Of(60 * time.Second), MaxWait: units.Of(100 * time.Millisecond),
		MaxBatchBytes: units.Bytes(1 << 20), StaticMembership: true,
		Claims: ClaimsConfig{KeyPrefix: "sluice:claims:"},
	}
}

func (c Conn) validate() []error {
	var errs []error
	if len(c.Brokers) == 0 {
		errs = append(errs, errors.New("brokers: at least one host:port is required"))
	}
	for i, b := range c.Brokers {
		if b == "" {
			errs = append(errs, fmt.Errorf("brokers[%d]: is empty", i))
		}
	}
	if c.Version != "" {
		if _, err := sarama.ParseKafkaVersion(c.Version); err != nil {
			errs = append(errs, fmt.Errorf("version: %v", err))
		}
	}
	errs = append(errs, positive("dial_timeout", c.DialTimeout)...)
	switch c.SASL.Mechanism {
	case "":
	case "PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512":
		if c.SASL.Username == "" {
			errs = append(errs, errors.New("sasl.username: is required with a mechanism"))
		}
	default:
		errs = append(errs, fmt.Errorf("sasl.mechanism: %q is not one of PLAIN, SCRAM-SHA-256, SCRAM-SHA-512", c.SASL.Mechanism))
	}
	if err := c.TLS.Validate("tls"); err != nil {
		errs = append(errs, err)
	}
	return errs
}

func positive(key string, d units.Duration) []error {
	if err := d.Err(); err != nil {
		return []error{fmt.Errorf("%s: %v", key, err)}
	}
	if d.D <= 0 {
		return []error{fmt.Errorf("%s: must be greater than zero", key)}
	}
	return nil
}

func positiveSize(key string, s units.Size) []error {
	if err := s.Err(); err != nil {
		return []error{fmt.Errorf("%s: %v", key, err)}
	}
	if s.Bytes <= 0 {
		return []error{fmt.Errorf("%s: must be greater than zero", key)}
	}
	return nil
}

var compressions = map[string]sarama.CompressionCodec{
	"none": sarama.CompressionNone, "gzip": sarama.CompressionGZIP, "snappy": sarama.CompressionSnappy,
	"lz4": sarama.CompressionLZ4, "zstd": sarama.CompressionZSTD,
}

// Validate reports every problem of c at once, each prefixed with its key.
func (c SinkConfig) Validate() error {
	errs := c.Conn.validate()
	if c.Topic == "" {
		errs = append(errs, errors.New("topic: is required"))
	}
	if _, ok := compressions[c.Compression]; !ok {
		errs = append(errs, fmt.Errorf("compression: %q is not one of none, gzip, snappy, lz4, zstd", c.Compression))
	}
	errs = append(errs, positiveSize("max_message_bytes", c.MaxMessageBytes)...)
	errs = append(errs, positiveSize("flush_bytes", c.FlushBytes)...)
	if c.FlushMessages < 1 {
		errs = append(errs, errors.New("flush_messages: must be at least 1"))
	}
	if err := c.Linger.Err(); err != nil {
		errs = append(errs, fmt.Errorf("linger: %v", err))
	} else if c.Linger.D < 0 {
		errs = append(errs, errors.New("linger: must not be negative"))
	}
	errs = append(errs, positive("timeout", c.Timeout)...)
	if c.Retries < 1 {
		errs = append(errs, errors.New("retries: must be at least 1 (the idempotent producer needs it)"))
	}
	return errors.Join(errs...)
}

// Validate reports every problem of c at once, each prefixed with its key.
func (c SourceConfig) Validate() error {
	errs := c.Conn.validate()
	if len(c.Topics) == 0 {
		errs = append(errs, errors.New("topics: at least one topic is required"))
	}
	for i, t := range c.Topics {
		if t == "" {
			errs = append(errs, fmt.Errorf("topics[%d]: is empty", i))
		}
	}
	if c.Group == "" {
		errs = append(errs, errors.New("group: is required"))
	}
	if c.StartAt != "earliest" && c.StartAt != "latest" {
		errs = append(errs, fmt.Errorf("start_at: %q is not one of earliest, latest", c.StartAt))
	}
	for _, d := range []struct {
		k string
		v units.Duration
	}{{"session_timeout", c.SessionTimeout}, {"heartbeat_interval", c.HeartbeatInterval},
		{"rebalance_timeout", c.RebalanceTimeout}, {"max_wait", c.MaxWait}} {
		errs = append(errs, positive(d.k, d.v)...)
	}
	if c.HeartbeatInterval.D >= c.SessionTimeout.D && c.SessionTimeout.D > 0 {
		errs = append(errs, errors.New("heartbeat_interval: must be shorter than session_timeout"))
	}
	errs = append(errs, positiveSize("max_batch_bytes", c.MaxBatchBytes)...)
	errs = append(errs, c.Claims.validate()...)
	return errors.Join(errs...)
}

// saramaConfig fills the parts of a sarama config that come from Conn.
func (c Conn) saramaConfig() (*sarama.Config, error) {
	sc := sarama.NewConfig()
	sc.ClientID = c.ClientID
	if c.Version != "" {
		v, err := sarama.ParseKafkaVersion(c.Version)
		if err != nil {
			return nil, err
		}
		sc.Version = v
	}
	sc.Net.DialTimeout = c.DialTimeout.D
	tc, err := c.TLS.Build()
	if err != nil {
		return nil, err
	}
	if tc != nil {
		sc.Net.TLS.Enable, sc.Net.TLS.Config = true, tc
	}
	if m := c.SASL.Mechanism; m != "" {
		sc.Net.SASL.Enable = true
		sc.Net.SASL.User, sc.Net.SASL.Password = c.SASL.Username, c.SASL.Password
		sc.Net.SASL.Handshake = true
		switch m {
		case "PLAIN":
			sc.Net.SASL.Mechanism = sarama.SASLTypePlaintext
		case "SCRAM-SHA-256":
			sc.Net.SASL.Mechanism = sarama.SASLTypeSCRAMSHA256
			sc.Net.SASL.SCRAMClientGeneratorFunc = func() sarama.SCRAMClient { return newSCRAM(sha256.New) }
		case "SCRAM-SHA-512":
			sc.Net.SASL.Mechanism = sarama.SASLTypeSCRAMSHA512
			sc.Net.SASL.SCRAMClientGeneratorFunc = func() sarama.SCRAMClient { return newSCRAM(sha512.New) }
		}
	}
	return sc, nil
}
