package wasmhost

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"slices"

	"github.com/tetratelabs/wazero/api"
)

// maxHTTPResponse bounds a response body handed to a guest.
const maxHTTPResponse = 16 << 20

var httpClient = &http.Client{}

// hostHTTPRequest performs request := method url nHeaders header* body for
// a source or sink, only to a granted host:port (ABI.md §6).
func hostHTTPRequest(ctx context.Context, mod api.Module, stack []uint64) {
	inst := instanceFrom(ctx)
	inst.pending = nil
	req := guestBytes(mod, "http_request", "request", uint32(stack[0]), uint32(stack[1]))
	resp, err := inst.doHTTP(ctx, bytes.Clone(req))
	if err != nil {
		inst.pending = []byte(err.Error())
		stack[0] = minusOne
		return
	}
	stack[0] = deliver(inst, mod, "http_request", resp, uint32(stack[2]), uint32(stack[3]))
}

func (inst *instance) doHTTP(ctx context.Context, raw []byte) ([]byte, error) {
	r := frameReader{buf: raw}
	method, err := r.bytes("method")
	if err != nil {
		return nil, fmt.Errorf("malformed request: %v", err)
	}
	rawURL, err := r.bytes("url")
	if err != nil {
		return nil, fmt.Errorf("malformed request: %v", err)
	}
	nh, err := r.u32("header count")
	if err != nil {
		return nil, fmt.Errorf("malformed request: %v", err)
	}
	header := http.Header{}
	for i := uint32(0); i < nh; i++ {
		name, err := r.bytes("header name")
		if err != nil {
			return nil, fmt.Errorf("malformed request: %v", err)
		}
		value, err := r.bytes("header value")
		if err != nil {
			return nil, fmt.Errorf("malformed request: %v", err)
		}
		header.Add(string(name), string(value))
	}
	body, err := r.bytes("body")
	if err != nil {
		return nil, fmt.Errorf("malformed request: %v", err)
	}
	u, err := url.Parse(string(rawURL))
	if err != nil {
		return nil, fmt.Errorf("bad url: %v", err)
	}
	if err := inst.p.allowHost(u); err != nil {
		return nil, err
	}
	hreq, err := http.NewRequestWithContext(ctx, string(method), u.String(), bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	hreq.Header = header
	client := *httpClient
	client.CheckRedirect = func(next *http.Request, _ []*http.Request) error { return inst.p.allowHost(next.URL) }
	resp, err := client.Do(hreq)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	respBody, err := io.ReadAll(io.LimitReader(resp.Body, maxHTTPResponse+1))
	if err != nil {
		return nil, err
	}
	if len(respBody) > maxHTTPResponse {
		return nil, fmt.Errorf("response body over %d bytes", maxHTTPResponse)
	}
	out := binary.LittleEndian.AppendUint32(nil, uint32(resp.StatusCode))
	n := 0
	for _, vs := range resp.Header {
		n += len(vs)
	}
	out = binary.LittleEndian.AppendUint32(out, uint32(n))
	names := make([]string, 0, len(resp.Header))
	for name := range resp.Header {
		names = append(names, name)
	}
	slices.Sort(names)
	for _, name := range names {
		for _, v := range resp.Header[name] {
			out = appendBytes(out, []byte(name))
			out = appendBytes(out, []byte(v))
		}
	}
	return appendBytes(out, respBody), nil
}

func (p *Plugin) allowHost(u *url.URL) error {
	if u.Scheme != "http" && u.Scheme != "https" {
		return fmt.Errorf("scheme %q refused: only http and https", u.Scheme)
	}
	host := u.Host
	if u.Port() == "" {
		port := "80"
		if u.Scheme == "https" {
			port = "443"
		}
		host = net.JoinHostPort(u.Hostname(), port)
	}
	if slices.Contains(p.cfg.HTTPHosts, host) {
		return nil
	}
	return errors.New("host " + host + " is not in this plugin's http_hosts")
}
