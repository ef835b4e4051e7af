package config

import (
	"strings"
	"testing"
	"time"
)

func TestOpAMPTable(t *testing.T) {
	const graph = `
[channels.raw]
[sources.in]
type = "gen"
output = "raw"
[sinks.out]
type = "file"
input = "raw"
`
	const key = "Hq1f9CgZ0t9X7JYDnOq8p0m4mAivw6n5mLJTf/0tHfg="
	cases := []struct {
		name    string
		opamp   string
		wantErr string // "" for valid
	}{
		{name: "absent: off"},
		{name: "endpoint only", opamp: `endpoint = "ws://127.0.0.1:4320/v1/opamp"`},
		{name: "allow and keys", opamp: `endpoint = "wss://fleet:4320/v1/opamp"` + "\nallow = [\"bolts\", \"sinks\"]\ntrusted_keys = [\"" + key + "\"]\nhealth_grace = \"3s\""},
		{name: "http endpoint", opamp: `endpoint = "http://fleet:4320"`, wantErr: `agent.opamp.endpoint: "http://fleet:4320" is not a ws:// or wss:// URL`},
		{name: "allow agent", opamp: `endpoint = "ws://f:1/v1/opamp"` + "\nallow = [\"agent\"]", wantErr: `agent.opamp.allow: "agent" cannot be remote-managed`},
		{name: "allow typo", opamp: `endpoint = "ws://f:1/v1/opamp"` + "\nallow = [\"sink\"]", wantErr: `agent.opamp.allow[0]: "sink" is not allowed (did you mean "sinks"?)`},
		{name: "short key", opamp: `endpoint = "ws://f:1/v1/opamp"` + "\ntrusted_keys = [\"AAAA\"]", wantErr: "agent.opamp.trusted_keys[0]: \"AAAA\" decodes to 3 bytes"},
		{name: "allow without endpoint", opamp: `allow = ["sinks"]`, wantErr: "agent.opamp.endpoint: allow and trusted_keys need an endpoint"},
		{name: "unknown key", opamp: `endpoint = "ws://f:1/v1/opamp"` + "\nallowed = [\"sinks\"]", wantErr: "allowed"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			text := "[agent]\nadmin_addr = \"off\"\n[agent.opamp]\n" + tc.opamp + "\n" + graph
			f, err := Parse("x.toml", []byte(text), testPlugins{})
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want one containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			o := f.Agent.OpAMP
			if o.Enabled() != (tc.opamp != "") {
				t.Errorf("Enabled = %v", o.Enabled())
			}
			if len(o.PublicKeys()) != len(o.TrustedKeys) {
				t.Errorf("PublicKeys dropped a key: %v", o.TrustedKeys)
			}
			if strings.Contains(tc.opamp, "health_grace") && o.HealthGrace.Or(DefaultHealthGrace) != 3*time.Second {
				t.Errorf("health_grace = %v", o.HealthGrace.Or(DefaultHealthGrace))
			}
		})
	}
}
