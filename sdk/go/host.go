package sluice

import (
	"encoding/binary"
	"fmt"
)

// LogLevel is the level of a Log line (sdk/ABI.md §6).
type LogLevel int32

// Log levels.
const (
	LevelDebug LogLevel = 0
	LevelInfo  LogLevel = 1
	LevelWarn  LogLevel = 2
	LevelError LogLevel = 3
)

// Log writes msg to the agent log under the plugin's name. Capability "log".
func Log(level LogLevel, msg string) { hostLog(int32(level), msg) }

// Logf formats and logs. Capability "log".
func Logf(level LogLevel, format string, args ...any) {
	hostLog(int32(level), fmt.Sprintf(format, args...))
}

// Now returns the host's clock in unix nanoseconds. Capability "clock".
func Now() int64 { return hostNow() }

// Random fills p with cryptographically random bytes. Capability "random".
func Random(p []byte) { hostRandom(p) }

// CounterAdd adds delta to the plugin counter name, which the agent exports
// as a Prometheus metric. Capability "metrics".
func CounterAdd(name string, delta int64) { hostCounterAdd(name, delta) }

// resultBuf receives variable-length answers of host functions. It starts
// small and grows to the largest answer seen (sdk/ABI.md §6.1).
var resultBuf = make([]byte, 4<<10)

// fetch completes a host call that returned n: the answer is in resultBuf
// when it fitted, otherwise it is the host's pending result.
func fetch(n int32) []byte {
	if int(n) <= len(resultBuf) {
		return resultBuf[:n]
	}
	resultBuf = make([]byte, n)
	m := hostTakeResult(resultBuf)
	if m < 0 || m > n {
		panic(fmt.Sprintf("sluice: take_result returned %d for a pending result of %d bytes", m, n))
	}
	return resultBuf[:m]
}

// StateGet returns the value stored under key. The value aliases an SDK
// buffer: it is valid until the next State* or HTTPDo call. Capability
// "state".
func StateGet(key []byte) ([]byte, bool) {
	n := hostStateGet(key, resultBuf)
	if n < 0 {
		return nil, false
	}
	return fetch(n), true
}

// StatePut stores value under key. It fails when the host refuses the write
// (the plugin's state quota is full). Capability "state".
func StatePut(key, value []byte) error {
	if hostStatePut(key, value) != 0 {
		return fmt.Errorf("sluice: state_put of key %q refused by the host (state quota)", key)
	}
	return nil
}

// StateDelete removes key. Capability "state".
func StateDelete(key []byte) { hostStateDelete(key) }

// StateScan calls fn for every key starting with prefix, in ascending order,
// until fn returns false. key and value alias an SDK buffer valid until the
// next State* or HTTPDo call. Capability "state".
func StateScan(prefix []byte, fn func(key, value []byte) bool) error {
	n := hostStateScan(prefix, resultBuf)
	if n < 0 {
		return fmt.Errorf("sluice: state_scan of prefix %q failed", prefix)
	}
	return eachPair(fetch(n), fn)
}

// eachPair walks count:u32 (key:bytes value:bytes)*count.
func eachPair(b []byte, fn func(key, value []byte) bool) error {
	r := batchReader{buf: b}
	n, ok := r.u32()
	if !ok {
		return fmt.Errorf("sluice: state_scan answer of %d bytes has no count", len(b))
	}
	for i := uint32(0); i < n; i++ {
		k, ok1 := r.bytes()
		v, ok2 := r.bytes()
		if !ok1 || !ok2 {
			return fmt.Errorf("sluice: state_scan answer: pair %d at byte %d runs past the end", i, r.off)
		}
		if !fn(k, v) {
			return nil
		}
	}
	if r.off != len(b) {
		return fmt.Errorf("sluice: state_scan answer: %d trailing bytes", len(b)-r.off)
	}
	return nil
}

// Header is one name/value pair of an HTTP request or response.
type Header struct {
	Name  string
	Value string
}

// HTTPRequest is a request for HTTPDo.
type HTTPRequest struct {
	Method  string
	URL     string // its host:port must be in the plugin's http_hosts
	Headers []Header
	Body    []byte
}

// HTTPResponse is what HTTPDo returns. It owns its memory.
type HTTPResponse struct {
	Status  int
	Headers []Header
	Body    []byte
}

var httpBuf []byte

// HTTPDo performs req through the host. Capability "http", sources and sinks
// only.
func HTTPDo(req *HTTPRequest) (*HTTPResponse, error) {
	httpBuf = appendHTTPRequest(httpBuf[:0], req)
	n := hostHTTPRequest(httpBuf, resultBuf)
	if n < 0 {
		msg := "refused"
		if m := hostTakeResult(resultBuf); m >= 0 && int(m) <= len(resultBuf) {
			msg = string(resultBuf[:m])
		}
		return nil, fmt.Errorf("sluice: http %s %s: %s", req.Method, req.URL, msg)
	}
	return parseHTTPResponse(fetch(n))
}

// appendHTTPRequest encodes method:bytes url:bytes nHeaders:u32 header* body:bytes.
func appendHTTPRequest(b []byte, req *HTTPRequest) []byte {
	b = appendString(b, req.Method)
	b = appendString(b, req.URL)
	b = binary.LittleEndian.AppendUint32(b, uint32(len(req.Headers)))
	for _, h := range req.Headers {
		b = appendString(b, h.Name)
		b = appendString(b, h.Value)
	}
	b = binary.LittleEndian.AppendUint32(b, uint32(len(req.Body)))
	return append(b, req.Body...)
}

func appendString(b []byte, s string) []byte {
	b = binary.LittleEndian.AppendUint32(b, uint32(len(s)))
	return append(b, s...)
}

// parseHTTPResponse decodes status:u32 nHeaders:u32 header* body:bytes.
func parseHTTPResponse(b []byte) (*HTTPResponse, error) {
	r := batchReader{buf: b}
	status, ok1 := r.u32()
	nh, ok2 := r.u32()
	if !ok1 || !ok2 {
		return nil, fmt.Errorf("sluice: http response of %d bytes is truncated", len(b))
	}
	if uint64(nh)*8 > uint64(len(b)-r.off) {
		return nil, fmt.Errorf("sluice: http response claims %d headers in %d bytes", nh, len(b)-r.off)
	}
	resp := &HTTPResponse{Status: int(status), Headers: make([]Header, 0, nh)}
	for i := uint32(0); i < nh; i++ {
		name, ok1 := r.bytes()
		value, ok2 := r.bytes()
		if !ok1 || !ok2 {
			return nil, fmt.Errorf("sluice: http response header %d at byte %d runs past the end", i, r.off)
		}
		resp.Headers = append(resp.Headers, Header{string(name), string(value)})
	}
	body, ok := r.bytes()
	if !ok {
		return nil, fmt.Errorf("sluice: http response body at byte %d runs past the end", r.off)
	}
	if r.off != len(b) {
		return nil, fmt.Errorf("sluice: http response has %d trailing bytes", len(b)-r.off)
	}
	resp.Body = append([]byte(nil), body...)
	return resp, nil
}
