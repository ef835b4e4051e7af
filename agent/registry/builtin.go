package registry

import (
	"github.com/sluicehq/sluice/agent/config"
	"github.com/sluicehq/sluice/agent/pipeline"
	"github.com/sluicehq/sluice/plugins/tail"
)

// Builtin returns a registry holding every built-in plugin. This is the one
// place built-in plugins are registered.
func Builtin() *Registry {
	r := New()
	must(r.Register(Plugin{
		Kind: config.KindSource, Type: "tail", Sample: tail.SampleConfig,
		NewConfig: func() any { c := tail.DefaultConfig(); return &c },
		NewSource: func(cfg any, env Env) (pipeline.Source, error) {
			return tail.New(*cfg.(*tail.Config), env.Logger)
		},
	}))
	return r
}

func must(err error) {
	if err != nil {
		panic(err)
	}
}
