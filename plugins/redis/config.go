package redis

import (
	_ "embed"
	"errors"
	"fmt"
	"time"

	"github.com/sluicehq/sluice/plugins/internal/tlsconf"
	"github.com/sluicehq/sluice/plugins/internal/units"
)

// SampleConfig is the documented sample of a [sinks.NAME] table for the
// redis sink; the README shows it and a test decodes and validates it.
//
//go:embed sample.toml
var SampleConfig string

// Modes of deployment, each served by go-redis' universal client.
const (
	ModeStandalone = "standalone"
	ModeSentinel   = "sentinel"
	ModeCluster    = "cluster"
)

// Config is the redis sink's configuration.
type Config struct {
	// Mode is standalone, sentinel or cluster.
	Mode string `toml:"mode"`
	// Addrs: the server (standalone), the sentinels (sentinel) or seed nodes
	// (cluster), as host:port.
	Addrs []string `toml:"addrs"`
	// MasterName is the Sentinel master set; sentinel mode only.
	MasterName string `toml:"master_name"`
	// Username and Password authenticate (ACL user, or password alone for
	// requirepass). SentinelUsername/SentinelPassword for the sentinels.
	Username         string `toml:"username"`
	Password         string `toml:"password"`
	SentinelUsername string `toml:"sentinel_username"`
	SentinelPassword string `toml:"sentinel_password"`
	// DB is the database number (standalone and sentinel).
	DB int `toml:"db"`
	// DialTimeout, ReadTimeout and WriteTimeout bound one network step; a
	// batch that times out is retried by the runner (backpressure).
	DialTimeout  units.Duration `toml:"dial_timeout"`
	ReadTimeout  units.Duration `toml:"read_timeout"`
	WriteTimeout units.Duration `toml:"write_timeout"`
	// PoolSize is the number of connections per node.
	PoolSize int `toml:"pool_size"`
	// FencePrefix starts the name of every fence key. A fence key holds the
	// last batch applied for one input stream of one agent.
	FencePrefix string `toml:"fence_prefix"`
	// InstanceID names this agent's sink in its fence keys. Empty: a random
	// id created once in the stage's data directory. Two agents must never
	// share one.
	InstanceID string `toml:"instance_id"`
	// TLS for the connection to Redis (and the sentinels).
	TLS tlsconf.Config `toml:"tls"`
	// Commands switches to mapping mode: events are plain JSON objects and
	// each becomes these commands, instead of being command records.
	Commands []Mapping `toml:"commands"`
}

// DefaultConfig returns the defaults that apply to keys a file leaves out.
func DefaultConfig() Config {
	return Config{
		Mode:         ModeStandalone,
		Addrs:        []string{"127.0.0.1:6379"},
		DialTimeout:  units.Of(5 * time.Second),
		ReadTimeout:  units.Of(10 * time.Second),
		WriteTimeout: units.Of(10 * time.Second),
		PoolSize:     4,
		FencePrefix:  "sluice:fence:",
	}
}

// Validate reports every problem of c at once, each prefixed with its key.
func (c Config) Validate() error {
	var errs []error
	switch c.Mode {
	case ModeStandalone:
		if len(c.Addrs) != 1 {
			errs = append(errs, fmt.Errorf("addrs: standalone mode needs exactly one address, got %d", len(c.Addrs)))
		}
	case ModeSentinel:
		if len(c.Addrs) == 0 {
			errs = append(errs, errors.New("addrs: sentinel mode needs the sentinels' addresses"))
		}
		if c.MasterName == "" {
			errs = append(errs, errors.New("master_name: is required in sentinel mode"))
		}
	case ModeCluster:
		if len(c.Addrs) == 0 {
			errs = append(errs, errors.New("addrs: cluster mode needs at least one seed node"))
		}
		if c.DB != 0 {
			errs = append(errs, errors.New("db: a cluster has only database 0"))
		}
	default:
		errs = append(errs, fmt.Errorf("mode: %q is not one of standalone, sentinel, cluster", c.Mode))
	}
	if c.Mode != ModeSentinel && c.MasterName != "" {
		errs = append(errs, errors.New("master_name: only for mode = \"sentinel\""))
	}
	for i, a := range c.Addrs {
		if a == "" {
			errs = append(errs, fmt.Errorf("addrs[%d]: is empty", i))
		}
	}
	if c.DB < 0 {
		errs = append(errs, errors.New("db: must not be negative"))
	}
	for _, d := range []struct {
		key string
		v   units.Duration
	}{{"dial_timeout", c.DialTimeout}, {"read_timeout", c.ReadTimeout}, {"write_timeout", c.WriteTimeout}} {
		if err := d.v.Err(); err != nil {
			errs = append(errs, fmt.Errorf("%s: %v", d.key, err))
		} else if d.v.D <= 0 {
			errs = append(errs, fmt.Errorf("%s: must be greater than zero", d.key))
		}
	}
	if c.PoolSize < 1 {
		errs = append(errs, errors.New("pool_size: must be at least 1"))
	}
	if c.FencePrefix == "" {
		errs = append(errs, errors.New("fence_prefix: is required (e.g. \"sluice:fence:\")"))
	}
	if err := c.TLS.Validate("tls"); err != nil {
		errs = append(errs, err)
	}
	errs = append(errs, validateMappings(c.Commands)...)
	return errors.Join(errs...)
}
