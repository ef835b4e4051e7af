package main

import (
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"log/slog"
	"strings"

	"github.com/sluicehq/sluice/agent/channel"
	"github.com/sluicehq/sluice/agent/config"
	"github.com/sluicehq/sluice/agent/event"
	"github.com/sluicehq/sluice/agent/pipeline"
	"github.com/sluicehq/sluice/agent/registry"
	"github.com/sluicehq/sluice/agent/topology"
)

const dlqAbout = `List or replay dead-lettered events. Run it while the agent is stopped
(channels are locked by the running agent).

  sluice dlq list   -c FILE [STAGE...]   print every dead letter: stage, reason, origin, body
  sluice dlq replay -c FILE STAGE        append STAGE's dead letters (without their sluice.*
                                         headers) to STAGE's input channel, once: a replay
                                         resumes where the last one stopped`

func cmdDLQ(args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" {
		fmt.Fprintf(stdout, "usage: sluice dlq list|replay -c FILE ...\n\n%s\n", dlqAbout)
		if len(args) == 0 {
			return usageError{"dlq needs list or replay"}
		}
		return errHelp
	}
	sub := args[0]
	if sub != "list" && sub != "replay" {
		return usageError{fmt.Sprintf("unknown dlq subcommand %q (want list or replay)", sub)}
	}
	fs := newFlags("dlq "+sub, "dlq "+sub+" -c FILE [STAGE...]", dlqAbout, stdout)
	cfgPath := fs.String("c", "", "config `FILE` (required)")
	if err := parse(fs, args[1:]); err != nil {
		return err
	}
	if *cfgPath == "" {
		return usageError{"dlq needs -c FILE"}
	}
	cfg, err := config.Load(*cfgPath, registry.Builtin())
	if err != nil {
		return exitError{exitUsage, err}
	}
	log := newLogger("warn", stderr)
	stages := fs.Args()
	if sub == "replay" && len(stages) != 1 {
		return usageError{"dlq replay needs exactly one STAGE"}
	}
	if len(stages) == 0 {
		for _, s := range cfg.Stages() {
			stages = append(stages, s.Name)
		}
	}
	for _, name := range stages {
		var st *config.Stage
		for _, s := range cfg.Stages() {
			if s.Name == name {
				st = s
			}
		}
		if st == nil {
			return usageError{fmt.Sprintf("no stage named %q in %s", name, cfg.Path)}
		}
		if sub == "list" {
			if err := dlqList(cfg, st, log, stdout); err != nil {
				return err
			}
		} else if err := dlqReplay(cfg, st, log, stdout); err != nil {
			return err
		}
	}
	return nil
}

// eachDeadLetter calls fn for every record of stage's dead-letter channel
// after offset from.
func eachDeadLetter(dlq channel.Channel, from uint64, fn func(channel.Record) error) error {
	const reader = "sluice-dlq-cli"
	r, err := dlq.Reader(reader, 0)
	if err != nil {
		return err
	}
	defer dlq.RemoveReader(reader, 0)
	if err := r.Seek(from); err != nil {
		return err
	}
	for {
		rec, ok, err := r.TryNext()
		if err != nil || !ok {
			return err
		}
		if err := fn(rec); err != nil {
			return err
		}
	}
}

func dlqList(cfg *config.File, st *config.Stage, log *slog.Logger, stdout io.Writer) error {
	dlq, err := topology.OpenDeadLetter(cfg.Agent.DataDir, st.Name, log)
	if err != nil {
		return err
	}
	defer dlq.Close()
	n := 0
	err = eachDeadLetter(dlq, 0, func(rec channel.Record) error {
		return event.Iterate(rec.Batch, func(_ int, e *event.Event) error {
			n++
			reason, _ := e.Header(pipeline.HeaderReason)
			origin, _ := e.Header(pipeline.HeaderOrigin)
			body := string(e.Body)
			if len(body) > 200 {
				body = body[:200] + "…"
			}
			fmt.Fprintf(stdout, "%s@%d\treason=%q\torigin=%s\t%s\n", st.Name, rec.Offset, reason, origin, strings.TrimRight(body, "\n"))
			return nil
		})
	})
	fmt.Fprintf(stdout, "%s: %d dead letters\n", st.Name, n)
	return err
}

func dlqReplay(cfg *config.File, st *config.Stage, log *slog.Logger, stdout io.Writer) error {
	if st.Input == "" {
		return usageError{fmt.Sprintf("%s is a source: it has no input channel to replay into", st.Name)}
	}
	dlq, err := topology.OpenDeadLetter(cfg.Agent.DataDir, st.Name, log)
	if err != nil {
		return err
	}
	defer dlq.Close()
	c := cfg.Channels[st.Input]
	in, err := channel.Open(channel.Options{Dir: topology.ChannelDir(cfg.Agent.DataDir, st.Input), Partitions: c.Partitions, Logger: log})
	if err != nil {
		return err
	}
	defer in.Close()
	// Hop protocol: the replay's own position (the dead-letter offset) is
	// stored with what it appends, so a second replay continues after it.
	const producer = "sluice-dlq-replay"
	var from uint64
	if b, ok := in.LastInputPosition(0, producer); ok && len(b) == 8 {
		from = binary.LittleEndian.Uint64(b)
	}
	n := 0
	ctx := context.Background()
	err = eachDeadLetter(dlq, from, func(rec channel.Record) error {
		var b event.Builder
		err := event.Iterate(rec.Batch, func(_ int, e *event.Event) error {
			clean := event.Event{Time: e.Time, Key: e.Key, Body: e.Body}
			for _, h := range e.Headers {
				if !strings.HasPrefix(h.Name, "sluice.") {
					clean.Headers = append(clean.Headers, h)
				}
			}
			b.Add(&clean)
			return nil
		})
		if err != nil {
			return err
		}
		if _, err := in.Append(ctx, 0, producer, b.Bytes(), b.Len(), binary.LittleEndian.AppendUint64(nil, rec.Offset)); err != nil {
			return err
		}
		n += b.Len()
		return nil
	})
	fmt.Fprintf(stdout, "%s: replayed %d events into channel %s\n", st.Name, n, st.Input)
	return err
}
