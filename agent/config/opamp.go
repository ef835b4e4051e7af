package config

import (
	"crypto/ed25519"
	"encoding/base64"
	"fmt"
	"net/url"
	"strings"
	"time"
)

// OpAMP is the [agent.opamp] table: the agent reports to and takes remote
// configuration and plugin packages from an OpAMP server (agent/fleet).
// Off unless Endpoint is set.
//
// What the server may change is decided here, in the agent's own file, and
// nowhere else: Allow lists the top-level tables a remote config may change
// (default none: the server can watch but not steer), and only packages
// signed by one of TrustedKeys are installed (default none: every package is
// refused). The [agent] table itself is never remote-changeable, so the
// server cannot widen either list.
type OpAMP struct {
	// Endpoint is the OpAMP server's WebSocket URL (ws:// or wss://), e.g.
	// "ws://fleet.internal:4320/v1/opamp".
	Endpoint string `toml:"endpoint"`
	// Name names this agent to the server (service.name is always
	// "sluice"). Default: the host name.
	Name string `toml:"name"`
	// Allow lists the top-level tables a remote config may change: any of
	// "channels", "sources", "bolts", "sinks". A remote config that changes
	// another table is refused as a whole.
	Allow []string `toml:"allow"`
	// TrustedKeys are the ed25519 public keys (base64 of 32 bytes, as
	// `sluice fleet keygen` prints them) whose signatures make a plugin
	// package acceptable.
	TrustedKeys []string `toml:"trusted_keys"`
	// HealthGrace is how long an applied remote config must keep every
	// component healthy; one that fails within it is rolled back to the
	// previous config and reported failed. Default 10s.
	HealthGrace Duration `toml:"health_grace"`
}

// DefaultHealthGrace is OpAMP.HealthGrace when the file leaves it out.
const DefaultHealthGrace = 10 * time.Second

// RemoteTables are the top-level tables an [agent.opamp] allow list may
// name. "agent" is not one of them: it holds this very list.
var RemoteTables = []string{"bolts", "channels", "sinks", "sources"}

// Enabled reports whether the agent talks to an OpAMP server.
func (o *OpAMP) Enabled() bool { return o.Endpoint != "" }

// PublicKeys returns TrustedKeys decoded. A checked File has only valid
// keys, so errors cannot occur there.
func (o *OpAMP) PublicKeys() []ed25519.PublicKey {
	var keys []ed25519.PublicKey
	for _, k := range o.TrustedKeys {
		if pk, err := ParsePublicKey(k); err == nil {
			keys = append(keys, pk)
		}
	}
	return keys
}

// ParsePublicKey decodes an ed25519 public key written as base64 of its 32
// bytes.
func ParsePublicKey(s string) (ed25519.PublicKey, error) {
	raw, err := base64.StdEncoding.DecodeString(strings.TrimSpace(s))
	if err != nil {
		return nil, fmt.Errorf("%q is not base64", s)
	}
	if len(raw) != ed25519.PublicKeySize {
		return nil, fmt.Errorf("%q decodes to %d bytes, an ed25519 public key has %d", s, len(raw), ed25519.PublicKeySize)
	}
	return ed25519.PublicKey(raw), nil
}

// checkOpAMP validates the [agent.opamp] table (HealthGrace's default is
// applied by its reader: HealthGrace.Or(DefaultHealthGrace)).
func (c *checker) checkOpAMP(o *OpAMP) {
	for i, t := range o.Allow {
		if t == "agent" {
			c.add("agent.opamp.allow", "the [agent] table holds this list and the trusted keys; change it in the local file",
				"\"agent\" cannot be remote-managed")
			continue
		}
		c.oneOf(fmt.Sprintf("agent.opamp.allow[%d]", i), t, RemoteTables)
	}
	for i, k := range o.TrustedKeys {
		if _, err := ParsePublicKey(k); err != nil {
			c.add(fmt.Sprintf("agent.opamp.trusted_keys[%d]", i), "`sluice fleet keygen` prints a key pair", "%v", err)
		}
	}
	if o.Endpoint == "" {
		if len(o.Allow) > 0 || len(o.TrustedKeys) > 0 {
			c.add("agent.opamp.endpoint", `write e.g. "ws://127.0.0.1:4320/v1/opamp"`, "allow and trusted_keys need an endpoint")
		}
		return
	}
	u, err := url.Parse(o.Endpoint)
	if err != nil || (u.Scheme != "ws" && u.Scheme != "wss") || u.Host == "" {
		c.add("agent.opamp.endpoint", `write e.g. "ws://127.0.0.1:4320/v1/opamp"`, "%q is not a ws:// or wss:// URL", o.Endpoint)
	}
}
