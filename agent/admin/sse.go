package admin

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/sluicehq/sluice/agent/event"
)

// sse writes server-sent events. Every data payload is one line of JSON
// (encoding/json never emits a raw newline), so no event needs splitting.
type sse struct {
	w http.ResponseWriter
	f http.Flusher
}

func startSSE(w http.ResponseWriter) (*sse, error) {
	f, ok := w.(http.Flusher)
	if !ok {
		return nil, errors.New("response writer cannot flush")
	}
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	f.Flush()
	return &sse{w: w, f: f}, nil
}

func (s *sse) send(name string, v any) error {
	data, err := json.Marshal(v)
	if err != nil {
		return err
	}
	if _, err := fmt.Fprintf(s.w, "event: %s\ndata: %s\n\n", name, data); err != nil {
		return err
	}
	s.f.Flush()
	return nil
}

// events streams "topology" (at the start and whenever it changes),
// "status" and "results" every interval, for the dashboard.
func (s *Server) events(w http.ResponseWriter, r *http.Request) {
	out, err := startSSE(w)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	ctx := r.Context()
	var lastTopo []byte
	t := time.NewTicker(s.cfg.Interval)
	defer t.Stop()
	for {
		topo := s.agent.Topology()
		if b, _ := json.Marshal(topo); !bytes.Equal(b, lastTopo) {
			lastTopo = b
			if out.send("topology", topo) != nil {
				return
			}
		}
		if out.send("status", s.snapshot()) != nil {
			return
		}
		if res, err := s.currentResults(); err != nil {
			if out.send("problem", map[string]string{"error": err.Error()}) != nil {
				return
			}
		} else if out.send("results", res) != nil {
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// TapEvent is one event of a tap stream. Body is the text of a UTF-8 body;
// a binary body is in BodyBase64 instead (encoding/json base64-encodes
// []byte).
type TapEvent struct {
	Time       time.Time         `json:"time"`
	Key        string            `json:"key,omitempty"`
	Headers    map[string]string `json:"headers,omitempty"`
	Body       string            `json:"body,omitempty"`
	BodyBase64 []byte            `json:"body_base64,omitempty"`
}

// TapEnd is the last message of a tap stream.
type TapEnd struct {
	Sent    int    `json:"sent"`
	Dropped uint64 `json:"dropped"` // sampled events not sent because the client read too slowly
	Reason  string `json:"reason"`
}

func tapEvent(e event.Event) TapEvent {
	te := TapEvent{Time: time.Unix(0, e.Time).UTC(), Key: string(e.Key)}
	if len(e.Headers) > 0 {
		te.Headers = make(map[string]string, len(e.Headers))
		for _, h := range e.Headers {
			te.Headers[h.Name] = h.Value
		}
	}
	if utf8.Valid(e.Body) {
		te.Body = string(e.Body)
	} else {
		te.BodyBase64 = bytes.Clone(e.Body)
	}
	return te
}

// tap streams a bounded, sampled live view of a channel as "event"
// messages, then one "end" message. The agent's callback only copies into
// a bounded buffer, so a slow client loses samples (counted in
// TapEnd.Dropped), never slows the pipeline.
func (s *Server) tap(w http.ResponseWriter, r *http.Request) {
	name := r.URL.Query().Get("channel")
	if name == "" {
		http.Error(w, "query parameter channel is required", http.StatusBadRequest)
		return
	}
	sample, err := intParam(r, "sample", 1, MaxTapSample)
	if err == nil {
		var limit int
		limit, err = intParam(r, "limit", DefaultTapLimit, MaxTapLimit)
		if err == nil {
			s.serveTap(w, r, name, sample, limit)
			return
		}
	}
	http.Error(w, err.Error(), http.StatusBadRequest)
}

func (s *Server) serveTap(w http.ResponseWriter, r *http.Request, name string, sample, limit int) {
	known := false
	for _, c := range s.agent.Topology().Components {
		known = known || (c.Kind == KindChannel && c.Name == name)
	}
	if !known {
		http.Error(w, fmt.Sprintf("channel %q: %v", name, ErrUnknownChannel), http.StatusNotFound)
		return
	}
	select {
	case s.taps <- struct{}{}:
		defer func() { <-s.taps }()
	default:
		http.Error(w, fmt.Sprintf("%d taps are already running; try again later", maxTaps), http.StatusTooManyRequests)
		return
	}
	out, err := startSSE(w)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	ctx, cancel := context.WithCancel(r.Context())
	defer cancel()
	buf := make(chan TapEvent, tapBuffer)
	var queued int64
	var dropped atomic.Uint64
	tapDone := make(chan error, 1)
	go func() {
		tapDone <- s.agent.Tap(ctx, name, sample, func(e event.Event) bool {
			if ctx.Err() != nil {
				return false
			}
			select {
			case buf <- tapEvent(e):
				queued++ // only this goroutine touches queued
				return queued < int64(limit)
			default:
				dropped.Add(1)
				return true
			}
		})
		close(buf)
	}()
	sent, reason := 0, "limit reached"
	for te := range buf {
		if out.send("event", te) != nil {
			cancel()
			for range buf { // let the tap goroutine finish
			}
			return
		}
		sent++
	}
	if err := <-tapDone; err != nil {
		reason = err.Error()
	} else if sent < limit {
		reason = "stopped"
	}
	_ = out.send("end", TapEnd{Sent: sent, Dropped: dropped.Load(), Reason: reason})
}
