package main

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"

	"github.com/sluicehq/sluice/agent/event"
	"github.com/sluicehq/sluice/agent/wasmhost"
	"github.com/sluicehq/sluice/wasm-examples/internal/exampletest"
)

type received struct {
	method, contentType, token, body string
}

// TestWebhookSink builds the sink and writes batches to a local httptest
// server through the host's http capability.
func TestWebhookSink(t *testing.T) {
	var mu sync.Mutex
	var got []received
	status := http.StatusOK
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		defer mu.Unlock()
		got = append(got, received{r.Method, r.Header.Get("Content-Type"), r.Header.Get("X-Token"), string(b)})
		w.WriteHeader(status)
		io.WriteString(w, "no thanks")
	}))
	defer srv.Close()
	u, _ := url.Parse(srv.URL)

	wasm := exampletest.Build(t, ".")
	host := exampletest.NewHost(t)
	sink := host.Load(t, wasmhost.PluginConfig{
		Name: "webhook", Kind: wasmhost.KindSink, Path: wasm,
		Config:       map[string]any{"url": srv.URL + "/orders", "max_event_bytes": 16, "headers": map[string]any{"X-Token": "s3cret"}},
		Capabilities: []string{wasmhost.CapHTTP}, HTTPHosts: []string{u.Host},
	})
	ctx := context.Background()
	batch := event.AppendBatch(nil, []event.Event{
		{Body: []byte(`{"n":1}`)}, {Body: []byte(`{"n":2,"too":"long for 16"}`)}, {Body: []byte(`{"n":3}`)},
	})

	t.Run("delivers a batch as one request", func(t *testing.T) {
		res, err := sink.Write(ctx, batch)
		if err != nil || res.Status != wasmhost.StatusOK {
			t.Fatalf("write: %v %+v", err, res)
		}
		if len(res.Rejects) != 1 || res.Rejects[0].Index != 1 || !strings.Contains(res.Rejects[0].Reason, "max_event_bytes") {
			t.Fatalf("rejects %+v, want event 1 over max_event_bytes", res.Rejects)
		}
		mu.Lock()
		defer mu.Unlock()
		want := received{"POST", "application/x-ndjson", "s3cret", "{\"n\":1}\n{\"n\":3}\n"}
		if len(got) != 1 || got[0] != want {
			t.Fatalf("server received %+v, want %+v", got, want)
		}
	})

	t.Run("empty batch sends nothing", func(t *testing.T) {
		mu.Lock()
		before := len(got)
		mu.Unlock()
		res, err := sink.Write(ctx, event.AppendBatch(nil, nil))
		if err != nil || res.Status != wasmhost.StatusOK {
			t.Fatalf("write: %v %+v", err, res)
		}
		mu.Lock()
		defer mu.Unlock()
		if len(got) != before {
			t.Fatalf("an empty batch made %d requests", len(got)-before)
		}
	})

	t.Run("503 asks for a retry", func(t *testing.T) {
		mu.Lock()
		status = http.StatusServiceUnavailable
		mu.Unlock()
		res, err := sink.Write(ctx, batch)
		if err != nil || res.Status != wasmhost.StatusRetry || !strings.Contains(res.Message, "503") {
			t.Fatalf("write against a 503: %v %+v, want status retry naming 503", err, res)
		}
	})

	t.Run("400 fails the batch", func(t *testing.T) {
		mu.Lock()
		status = http.StatusBadRequest
		mu.Unlock()
		res, err := sink.Write(ctx, batch)
		if err != nil || res.Status != wasmhost.StatusError || !strings.Contains(res.Message, "400: no thanks") {
			t.Fatalf("write against a 400: %v %+v, want status error with the answer", err, res)
		}
	})

	t.Run("a host not granted fails the batch", func(t *testing.T) {
		other := host.Load(t, wasmhost.PluginConfig{
			Name: "webhook-elsewhere", Kind: wasmhost.KindSink, Path: wasm,
			Config:       map[string]any{"url": "http://192.0.2.1:9/hook"},
			Capabilities: []string{wasmhost.CapHTTP}, HTTPHosts: []string{u.Host},
		})
		res, err := other.Write(ctx, batch)
		if err != nil || res.Status != wasmhost.StatusError || !strings.Contains(res.Message, "http_hosts") {
			t.Fatalf("write to an ungranted host: %v %+v, want status error naming http_hosts", err, res)
		}
	})

	t.Run("bad url refused at load", func(t *testing.T) {
		_, err := host.Runtime().Load(ctx, wasmhost.PluginConfig{Name: "webhook-bad", Kind: wasmhost.KindSink, Path: wasm,
			Config: map[string]any{"url": "ftp://x"}, Capabilities: []string{wasmhost.CapHTTP}, HTTPHosts: []string{u.Host}})
		if err == nil || !strings.Contains(err.Error(), "config url") {
			t.Fatalf("load with url ftp://x: %v, want an error naming config url", err)
		}
	})
}
