// Package client talks to a running agent's admin API: the JSON endpoints,
// the server-sent event streams, and the terminal views behind `sluice top`
// and `sluice tap`.
package client

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/sluicehq/sluice/agent/admin"
)

// Client calls one agent's admin API. The zero HTTP uses
// http.DefaultClient (no timeout: streams are long-lived; bound calls with
// their context).
type Client struct {
	Base  string // e.g. "http://127.0.0.1:8686"
	Token string // bearer token, "" for none
	HTTP  *http.Client
}

// New returns a client for the admin server at addr ("host:port" or a URL).
func New(addr, token string) *Client {
	if !strings.Contains(addr, "://") {
		addr = "http://" + addr
	}
	return &Client{Base: strings.TrimRight(addr, "/"), Token: token}
}

func (c *Client) get(ctx context.Context, path string, accept string) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.Base+path, nil)
	if err != nil {
		return nil, err
	}
	if c.Token != "" {
		req.Header.Set("Authorization", "Bearer "+c.Token)
	}
	req.Header.Set("Accept", accept)
	hc := c.HTTP
	if hc == nil {
		hc = http.DefaultClient
	}
	resp, err := hc.Do(req)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		defer resp.Body.Close()
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 1024))
		return nil, fmt.Errorf("GET %s: %s: %s", path, resp.Status, bytes.TrimSpace(msg))
	}
	return resp, nil
}

// Status returns /api/status.
func (c *Client) Status(ctx context.Context) (*admin.StatusView, error) {
	resp, err := c.get(ctx, "/api/status", "application/json")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var v admin.StatusView
	if err := json.NewDecoder(resp.Body).Decode(&v); err != nil {
		return nil, fmt.Errorf("GET /api/status: decode: %w", err)
	}
	return &v, nil
}

// Tap streams /api/tap for channel: fn gets each event until the server
// ends the stream (limit reached), fn returns an error, or ctx ends. It
// returns the server's closing summary.
func (c *Client) Tap(ctx context.Context, channel string, sample, limit int, fn func(admin.TapEvent) error) (admin.TapEnd, error) {
	q := url.Values{"channel": {channel}}
	if sample > 0 {
		q.Set("sample", strconv.Itoa(sample))
	}
	if limit > 0 {
		q.Set("limit", strconv.Itoa(limit))
	}
	resp, err := c.get(ctx, "/api/tap?"+q.Encode(), "text/event-stream")
	if err != nil {
		if ctx.Err() != nil {
			err = nil // the caller stopped it
		}
		return admin.TapEnd{}, err
	}
	defer resp.Body.Close()
	var end admin.TapEnd
	gotEnd := false
	err = ReadSSE(resp.Body, func(m Message) error {
		switch m.Event {
		case "event":
			var e admin.TapEvent
			if err := json.Unmarshal(m.Data, &e); err != nil {
				return fmt.Errorf("tap: event: %w", err)
			}
			return fn(e)
		case "end":
			gotEnd = true
			if err := json.Unmarshal(m.Data, &end); err != nil {
				return fmt.Errorf("tap: end: %w", err)
			}
			return errStop
		}
		return nil
	})
	if errors.Is(err, errStop) {
		err = nil
	}
	if err == nil && !gotEnd && ctx.Err() == nil {
		err = errors.New("tap: stream ended without its end message")
	}
	if ctx.Err() != nil {
		err = nil // the caller stopped it
	}
	return end, err
}

var errStop = errors.New("stop")

// Message is one server-sent event.
type Message struct {
	Event string // "message" when the server names none
	Data  []byte // data lines joined with "\n"
	ID    string
}

// MaxLine is the longest line ReadSSE accepts.
const MaxLine = 4 << 20

// ReadSSE decodes a text/event-stream (the WHATWG format) from r and calls
// fn for each message, until r ends (nil), fn fails (its error) or a line
// exceeds MaxLine (an error saying so).
func ReadSSE(r io.Reader, fn func(Message) error) error {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64<<10), MaxLine)
	sc.Split(splitLines)
	var m Message
	var data [][]byte
	line := 0
	for sc.Scan() {
		line++
		b := sc.Bytes()
		if len(b) == 0 {
			if data != nil {
				m.Data = bytes.Join(data, []byte("\n"))
				if m.Event == "" {
					m.Event = "message"
				}
				if err := fn(m); err != nil {
					return err
				}
			}
			m, data = Message{}, nil
			continue
		}
		if b[0] == ':' {
			continue // comment
		}
		field, value, _ := bytes.Cut(b, []byte(":"))
		value = bytes.TrimPrefix(value, []byte(" "))
		switch string(field) {
		case "event":
			m.Event = string(value)
		case "data":
			data = append(data, bytes.Clone(value))
		case "id":
			m.ID = string(value)
		}
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("event stream line %d: %w", line+1, err)
	}
	return nil
}

// splitLines splits at CRLF, LF or a lone CR, the three line ends of the
// event-stream format.
func splitLines(data []byte, atEOF bool) (advance int, token []byte, err error) {
	i := bytes.IndexAny(data, "\r\n")
	switch {
	case i < 0:
		if atEOF && len(data) > 0 {
			return len(data), data, nil
		}
		return 0, nil, nil
	case data[i] == '\n':
		return i + 1, data[:i], nil
	case i+1 < len(data):
		if data[i+1] == '\n' {
			return i + 2, data[:i], nil
		}
		return i + 1, data[:i], nil
	case atEOF:
		return i + 1, data[:i], nil
	default:
		return 0, nil, nil // a CR at the end: wait to see whether LF follows
	}
}
