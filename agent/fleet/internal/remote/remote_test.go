package remote

import (
	"strings"
	"testing"

	"github.com/BurntSushi/toml"
)

const running = `
[agent]
data_dir = "/var/lib/sluice"
labels = { role = "edge" }
[agent.opamp]
endpoint = "ws://fleet:4320/v1/opamp"
allow = ["sinks"]

[channels.raw]
partitions = 2

[sources.logs]
type = "tail"
output = "raw"

[sinks.out]
type = "file"
input = "raw"
[sinks.out.config]
path = "/tmp/a.log"
`

func decode(t *testing.T, text []byte) map[string]any {
	t.Helper()
	var m map[string]any
	if _, err := toml.Decode(string(text), &m); err != nil {
		t.Fatalf("merged text does not decode: %v\n%s", err, text)
	}
	return m
}

func TestMergeAllowList(t *testing.T) {
	cases := []struct {
		name    string
		offered string
		allow   []string
		wantErr string // "" for success
		check   func(t *testing.T, m map[string]any)
	}{
		{
			name:    "allowed table replaces the running one",
			offered: "[sinks.out]\ntype = \"file\"\ninput = \"raw\"\n[sinks.out.config]\npath = \"/tmp/b.log\"\n",
			allow:   []string{"sinks"},
			check: func(t *testing.T, m map[string]any) {
				path := m["sinks"].(map[string]any)["out"].(map[string]any)["config"].(map[string]any)["path"]
				if path != "/tmp/b.log" {
					t.Errorf("sinks.out.config.path = %v, want /tmp/b.log", path)
				}
				if m["sources"].(map[string]any)["logs"].(map[string]any)["type"] != "tail" {
					t.Errorf("sources were not kept: %v", m["sources"])
				}
			},
		},
		{
			name:    "tables left out are kept",
			offered: "",
			allow:   []string{"sinks"},
			check: func(t *testing.T, m map[string]any) {
				if _, ok := m["channels"]; !ok {
					t.Error("channels dropped")
				}
			},
		},
		{
			name:    "changing a table not allowed is refused",
			offered: "[channels.raw]\npartitions = 4\n",
			allow:   []string{"sinks"},
			wantErr: "remote config changes [channels], which agent.opamp.allow does not permit (it allows sinks)",
		},
		{
			name:    "default allows nothing",
			offered: "[sinks.out]\ntype = \"stdout\"\ninput = \"raw\"\n",
			allow:   nil,
			wantErr: "changes [sinks], which agent.opamp.allow does not permit (it allows nothing)",
		},
		{
			name:    "an identical copy of a table not allowed is accepted",
			offered: "[channels.raw]\npartitions = 2\n",
			allow:   []string{"sinks"},
		},
		{
			name:    "the agent table cannot widen the allow list",
			offered: "[agent]\ndata_dir = \"/var/lib/sluice\"\nlabels = { role = \"edge\" }\n[agent.opamp]\nendpoint = \"ws://fleet:4320/v1/opamp\"\nallow = [\"sinks\", \"sources\"]\n",
			allow:   []string{"sinks", "agent"},
			wantErr: "changes [agent]",
		},
		{
			name:    "every refused table is named",
			offered: "[channels.raw]\npartitions = 3\n[sources.logs]\ntype = \"kafka\"\noutput = \"raw\"\n",
			allow:   []string{"sinks"},
			wantErr: "changes [channels], [sources]",
		},
		{
			name:    "remote text that is not TOML",
			offered: "[sinks\n",
			allow:   []string{"sinks"},
			wantErr: "remote config:",
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Merge([]byte(running), []byte(tc.offered), tc.allow)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want one containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			m := decode(t, got)
			agent := m["agent"].(map[string]any)
			if agent["data_dir"] != "/var/lib/sluice" {
				t.Errorf("agent table not kept: %v", agent)
			}
			if tc.check != nil {
				tc.check(t, m)
			}
		})
	}
}

func FuzzMerge(f *testing.F) {
	f.Add([]byte("[sinks.out]\ntype = \"stdout\"\n"))
	f.Add([]byte("[agent]\ndata_dir = \"x\"\n"))
	f.Add([]byte("[[x]]\na=1\n"))
	f.Fuzz(func(t *testing.T, offered []byte) {
		merged, err := Merge([]byte(running), offered, []string{"sinks", "bolts"})
		if err != nil {
			return
		}
		m := decode(t, merged)
		// Whatever was offered, the agent table is the running one.
		var run map[string]any
		toml.Decode(running, &run)
		if _, err := toml.Decode(string(merged), &m); err != nil {
			t.Fatal(err)
		}
		if got, want := m["agent"].(map[string]any)["data_dir"], run["agent"].(map[string]any)["data_dir"]; got != want {
			t.Fatalf("agent.data_dir changed to %v", got)
		}
	})
}
