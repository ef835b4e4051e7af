// Command webhook-sink is a Sluice sink (Go): it POSTs each batch to an HTTP
// endpoint as newline-delimited bodies, through the host's http capability
// (the endpoint's host:port must be granted in http_hosts).
//
// Build: sluice plugin build wasm-examples/webhook-sink
package main

import (
	"errors"
	"fmt"
	"net/url"
	"strings"

	sluice "github.com/sluicehq/sluice/sdk/go"
)

type webhook struct {
	url      string
	method   string
	maxEvent int64
	headers  []sluice.Header
	body     []byte // the batch being written
	events   int
}

func (w *webhook) Init(cfg *sluice.Config) error {
	w.url = cfg.String("url", "")
	u, err := url.Parse(w.url)
	if w.url == "" || err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("config url: want an http or https URL, got %q", w.url)
	}
	w.method = strings.ToUpper(cfg.String("method", "POST"))
	if w.method != "POST" && w.method != "PUT" {
		return fmt.Errorf("config method: want POST or PUT, got %q", w.method)
	}
	if w.maxEvent, err = cfg.Int("max_event_bytes", 1<<20); err != nil || w.maxEvent <= 0 {
		return errors.New("config max_event_bytes: want a positive integer")
	}
	w.headers = []sluice.Header{{Name: "Content-Type", Value: cfg.String("content_type", "application/x-ndjson")}}
	for _, k := range cfg.Keys() {
		if name, ok := strings.CutPrefix(k, "headers."); ok {
			w.headers = append(w.headers, sluice.Header{Name: name, Value: cfg.String(k, "")})
		}
	}
	return nil
}

// Write adds one event to the request body; Flush sends it.
func (w *webhook) Write(e *sluice.Event) error {
	if int64(len(e.Body)) > w.maxEvent {
		return sluice.Reject(fmt.Sprintf("event of %d bytes is larger than max_event_bytes (%d)", len(e.Body), w.maxEvent))
	}
	w.body = append(append(w.body, e.Body...), '\n')
	w.events++
	return nil
}

// Flush sends the batch as one request. A 2xx answer delivers it; 429, 5xx
// or a network error ask the host to retry the batch later (backpressure, not
// loss); any other answer fails the batch with the endpoint's words.
func (w *webhook) Flush() error {
	defer func() { w.body, w.events = w.body[:0], 0 }()
	if w.events == 0 {
		return nil
	}
	resp, err := sluice.HTTPDo(&sluice.HTTPRequest{Method: w.method, URL: w.url, Headers: w.headers, Body: w.body})
	if err != nil {
		if strings.Contains(err.Error(), "http_hosts") || strings.Contains(err.Error(), "refused") {
			return err // a config error: retrying cannot help
		}
		return sluice.Retry(err.Error())
	}
	switch {
	case resp.Status >= 200 && resp.Status < 300:
		return nil
	case resp.Status == 429 || resp.Status >= 500:
		return sluice.Retry(fmt.Sprintf("%s answered %d", w.url, resp.Status))
	}
	msg := resp.Body
	if len(msg) > 200 {
		msg = msg[:200]
	}
	return fmt.Errorf("%s answered %d: %s", w.url, resp.Status, msg)
}

func init() { sluice.Register(&webhook{}) }

// main is never run: the module is a reactor whose exports the host calls.
func main() {}
