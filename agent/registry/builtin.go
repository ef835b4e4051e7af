package registry

import (
	"fmt"
	"path/filepath"

	"github.com/sluicehq/sluice/agent/config"
	"github.com/sluicehq/sluice/agent/pipeline"
	"github.com/sluicehq/sluice/plugins/file"
	"github.com/sluicehq/sluice/plugins/forward"
	"github.com/sluicehq/sluice/plugins/kafka"
	"github.com/sluicehq/sluice/plugins/redis"
	"github.com/sluicehq/sluice/plugins/sinkgroup"
	"github.com/sluicehq/sluice/plugins/stdout"
	"github.com/sluicehq/sluice/plugins/store"
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
	must(r.Register(Plugin{
		Kind: config.KindSink, Type: "file", Sample: file.SampleConfig,
		NewConfig: func() any { c := file.DefaultConfig(); return &c },
		NewSink: func(cfg any, env Env) (pipeline.Sink, error) {
			c := *cfg.(*file.Config)
			c.Path = partitionPath(c.Path, env)
			return file.New(c, env.Logger)
		},
	}))
	must(r.Register(Plugin{
		Kind: config.KindSink, Type: "stdout", Sample: stdout.SampleConfig,
		NewConfig: func() any { c := stdout.DefaultConfig(); return &c },
		NewSink: func(cfg any, env Env) (pipeline.Sink, error) {
			return stdout.New(*cfg.(*stdout.Config), env.Logger)
		},
	}))
	must(r.Register(Plugin{
		Kind: config.KindSink, Type: "store", Sample: store.SampleConfig,
		NewConfig: func() any { c := store.DefaultConfig(); return &c },
		NewSink: func(cfg any, env Env) (pipeline.Sink, error) {
			c := *cfg.(*store.Config)
			if !filepath.IsAbs(c.Path) {
				c.Path = filepath.Join(env.AgentDataDir, c.Path)
			}
			c.Path = partitionPath(c.Path, env)
			return store.New(c, env.Logger)
		},
	}))
	must(r.Register(Plugin{
		Kind: config.KindSource, Type: "kafka", Sample: kafka.SourceSampleConfig,
		NewConfig: func() any { c := kafka.DefaultSourceConfig(); return &c },
		NewSource: func(cfg any, env Env) (pipeline.Source, error) {
			return kafka.NewSource(*cfg.(*kafka.SourceConfig), env.DataDir, env.Logger)
		},
	}))
	must(r.Register(Plugin{
		Kind: config.KindSink, Type: "kafka", Sample: kafka.SinkSampleConfig,
		NewConfig: func() any { c := kafka.DefaultSinkConfig(); return &c },
		NewSink: func(cfg any, env Env) (pipeline.Sink, error) {
			return kafka.NewSink(*cfg.(*kafka.SinkConfig), partitionPath(env.DataDir, env), env.Logger)
		},
	}))
	must(r.Register(Plugin{
		Kind: config.KindSink, Type: "redis", Sample: redis.SampleConfig,
		NewConfig: func() any { c := redis.DefaultConfig(); return &c },
		NewSink: func(cfg any, env Env) (pipeline.Sink, error) {
			return redis.New(*cfg.(*redis.Config), partitionPath(env.DataDir, env), env.Logger)
		},
	}))
	must(r.Register(Plugin{
		Kind: config.KindSource, Type: "forward", Sample: forward.SourceSampleConfig,
		NewConfig: func() any { c := forward.DefaultSourceConfig(); return &c },
		NewSource: func(cfg any, env Env) (pipeline.Source, error) {
			return forward.NewSource(*cfg.(*forward.SourceConfig), env.Logger)
		},
	}))
	must(r.Register(Plugin{
		Kind: config.KindSink, Type: "forward", Sample: forward.SinkSampleConfig,
		NewConfig: func() any { c := forward.DefaultSinkConfig(); return &c },
		NewSink: func(cfg any, env Env) (pipeline.Sink, error) {
			return forward.NewSink(*cfg.(*forward.SinkConfig), partitionPath(env.DataDir, env), env.Logger)
		},
	}))
	// The group's members are sinks of this same registry, built through
	// their own plugin entries (a member sink of a partitioned input gets
	// the partition, like any sink).
	must(r.Register(Plugin{
		Kind: config.KindSink, Type: "group", Sample: sinkgroup.SampleConfig,
		NewConfig: func() any { c := sinkgroup.DefaultConfig(sinkTypes{r}); return &c },
		NewSink: func(cfg any, env Env) (pipeline.Sink, error) {
			return sinkgroup.New(*cfg.(*sinkgroup.Config), env.DataDir, func(m *sinkgroup.Member) (pipeline.Sink, error) {
				p, ok := r.Lookup(config.KindSink, m.Type)
				if !ok {
					return nil, fmt.Errorf("unknown sink type %q", m.Type)
				}
				menv := env
				menv.Name = env.Name + "." + m.Name
				menv.DataDir = filepath.Join(env.DataDir, m.Name)
				if env.Logger != nil {
					menv.Logger = env.Logger.With("member", m.Name)
				}
				return p.NewSink(m.Decoded(), menv)
			}, env.Logger)
		},
	}))
	return r
}

// sinkTypes gives the group sink the registry's sink types.
type sinkTypes struct{ r *Registry }

func (s sinkTypes) NewSinkConfig(typ string) (any, bool) { return s.r.NewConfig(config.KindSink, typ) }
func (s sinkTypes) SinkTypes() []string                  { return s.r.Types(config.KindSink) }

// partitionPath gives each instance of a sink reading a partitioned channel
// its own file or directory: PATH.pN. One instance (the usual case) keeps
// PATH.
func partitionPath(path string, env Env) string {
	if env.Partitions <= 1 {
		return path
	}
	return fmt.Sprintf("%s.p%d", path, env.Partition)
}

func must(err error) {
	if err != nil {
		panic(err)
	}
}
