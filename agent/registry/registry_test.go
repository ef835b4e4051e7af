package registry

import (
	"fmt"
	"strings"
	"testing"

	"github.com/sluicehq/sluice/agent/config"
	"github.com/sluicehq/sluice/agent/pipeline"
)

func TestRegisterRefusesDuplicatesAndIncompletePlugins(t *testing.T) {
	r := New()
	src := Plugin{Kind: config.KindSource, Type: "gen", NewConfig: func() any { return &struct{}{} },
		NewSource: func(any, Env) (pipeline.Source, error) { return nil, nil }}
	if err := r.Register(src); err != nil {
		t.Fatal(err)
	}
	if err := r.Register(src); err == nil || !strings.Contains(err.Error(), `source "gen" registered twice`) {
		t.Errorf("duplicate: %v", err)
	}
	if err := r.Register(Plugin{Kind: config.KindSink, Type: "x", NewConfig: func() any { return nil },
		NewSource: src.NewSource}); err == nil {
		t.Errorf("a sink without NewSink was accepted")
	}
	if got := r.Types(config.KindSource); fmt.Sprint(got) != "[gen]" {
		t.Errorf("Types = %v", got)
	}
	if _, ok := r.NewConfig(config.KindSink, "gen"); ok {
		t.Errorf("a source type answered as a sink")
	}
}

// TestBuiltinSamplesValidate decodes every built-in plugin's sample.toml
// through config, as the [KIND.x.config] table of a minimal topology.
func TestBuiltinSamplesValidate(t *testing.T) {
	r := Builtin()
	if len(r.All()) == 0 {
		t.Fatal("no built-in plugins registered")
	}
	for _, p := range r.All() {
		if p.Sample == "" {
			t.Errorf("%s %q has no sample config", p.Kind, p.Type)
			continue
		}
		a, b := r.NewConfig(p.Kind, p.Type)
		c, _ := r.NewConfig(p.Kind, p.Type)
		if !b || a == c {
			t.Errorf("%s %q: NewConfig must return a fresh value each time", p.Kind, p.Type)
		}
		var stage string
		switch p.Kind {
		case config.KindSource:
			stage = "[channels.c]\n[sources.x]\ntype = %q\noutput = \"c\"\n[sinks.s]\nwasm = \"m.wasm\"\ninput = \"c\"\n[sources.x.config]\n"
		case config.KindBolt:
			stage = "[channels.c]\n[channels.d]\n[sources.s]\nwasm = \"m.wasm\"\noutput = \"c\"\n[sinks.s2]\nwasm = \"m.wasm\"\ninput = \"d\"\n[bolts.x]\ntype = %q\ninput = \"c\"\noutput = \"d\"\n[bolts.x.config]\n"
		case config.KindSink:
			stage = "[channels.c]\n[sources.s]\nwasm = \"m.wasm\"\noutput = \"c\"\n[sinks.x]\ntype = %q\ninput = \"c\"\n[sinks.x.config]\n"
		}
		// The sample is the plugin's own table: its sub-table headers
		// ([tls]) live under [KIND.x.config].
		prefix := map[config.Kind]string{config.KindSource: "sources", config.KindBolt: "bolts", config.KindSink: "sinks"}[p.Kind] + ".x.config."
		var sample []string
		for _, line := range strings.Split(p.Sample, "\n") {
			t := strings.TrimSpace(line)
			switch {
			case strings.HasPrefix(t, "[["):
				line = "[[" + prefix + strings.TrimPrefix(t, "[[")
			case strings.HasPrefix(t, "["):
				line = "[" + prefix + strings.TrimPrefix(t, "[")
			}
			sample = append(sample, line)
		}
		text := fmt.Sprintf(stage, p.Type) + strings.Join(sample, "\n")
		_, err := config.Parse(p.Type+".toml", []byte(text), r)
		// The placeholder modules do not exist; everything else must be clean.
		if es, ok := err.(config.Errors); ok {
			for _, e := range es {
				if !strings.Contains(e.Msg, `module "m.wasm" does not exist`) {
					t.Errorf("%s %q sample: %v", p.Kind, p.Type, e)
				}
			}
		} else if err != nil {
			t.Errorf("%s %q sample: %v", p.Kind, p.Type, err)
		}
	}
}
