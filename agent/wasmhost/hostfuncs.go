package wasmhost

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/binary"
	"fmt"
	"log/slog"
	"sort"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf16"

	"github.com/tetratelabs/wazero/api"
)

// hostFunction is one import of module sluice_v1 (ABI.md §6).
type hostFunction struct {
	caps []string // importable when any of these is granted
	sig  signature
	fn   func(ctx context.Context, mod api.Module, stack []uint64)
}

// capabilityImports lists every capability name; the functions each one
// grants are in hostFunctions.
var capabilityImports = map[string]bool{CapLog: true, CapClock: true, CapRandom: true, CapMetrics: true, CapState: true, CapHTTP: true}

var hostFunctions map[string]hostFunction

func init() {
	i4 := []api.ValueType{i32, i32, i32, i32}
	r32 := []api.ValueType{i32}
	hostFunctions = map[string]hostFunction{
		"log":          {[]string{CapLog}, signature{[]api.ValueType{i32, i32, i32}, nil}, hostLog},
		"now":          {[]string{CapClock}, signature{nil, []api.ValueType{i64}}, hostNow},
		"random":       {[]string{CapRandom}, signature{[]api.ValueType{i32, i32}, nil}, hostRandom},
		"counter_add":  {[]string{CapMetrics}, signature{[]api.ValueType{i32, i32, i64}, nil}, hostCounterAdd},
		"state_get":    {[]string{CapState}, signature{i4, r32}, hostStateGet},
		"state_put":    {[]string{CapState}, signature{i4, r32}, hostStatePut},
		"state_delete": {[]string{CapState}, signature{[]api.ValueType{i32, i32}, r32}, hostStateDelete},
		"state_scan":   {[]string{CapState}, signature{i4, r32}, hostStateScan},
		"http_request": {[]string{CapHTTP}, signature{i4, r32}, hostHTTPRequest},
		"take_result":  {[]string{CapLog, CapClock, CapRandom, CapMetrics, CapState, CapHTTP}, signature{[]api.ValueType{i32, i32}, r32}, hostTakeResult},
	}
}

// instantiateHostModules provides sluice_v1 (only the granted functions, so
// that even wazero's own linker refuses the rest) and env.abort.
func (p *Plugin) instantiateHostModules(ctx context.Context) error {
	b := p.rt.NewHostModuleBuilder(hostModule)
	names := make([]string, 0, len(hostFunctions))
	for name := range hostFunctions {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		fn := hostFunctions[name]
		if !p.granted(fn) {
			continue
		}
		b.NewFunctionBuilder().
			WithGoModuleFunction(api.GoModuleFunc(fn.fn), fn.sig.params, fn.sig.results).
			WithName(name).
			Export(name)
	}
	if _, err := b.Instantiate(ctx); err != nil {
		return fmt.Errorf("instantiating %s: %w", hostModule, err)
	}
	_, err := p.rt.NewHostModuleBuilder("env").NewFunctionBuilder().
		WithGoModuleFunction(api.GoModuleFunc(hostAbort), []api.ValueType{i32, i32, i32, i32}, nil).
		WithName("abort").
		Export("abort").
		Instantiate(ctx)
	if err != nil {
		return fmt.Errorf("instantiating env: %w", err)
	}
	return nil
}

const minusOne = uint64(0xffffffff) // i32 -1 on the stack

// guestBytes returns a view of guest memory or traps with what was wrong.
func guestBytes(mod api.Module, fn, what string, ptr, n uint32) []byte {
	b, ok := mod.Memory().Read(ptr, n)
	if !ok {
		panic(fmt.Errorf("%s: %s [%#x, %#x) lies outside guest memory of %d bytes", fn, what, ptr, uint64(ptr)+uint64(n), mod.Memory().Size()))
	}
	return b
}

// deliver implements ABI.md §6.1: copy data to buf when it fits, otherwise
// keep it as the pending result; either way return its length.
func deliver(inst *instance, mod api.Module, fn string, data []byte, buf, capacity uint32) uint64 {
	if uint64(len(data)) <= uint64(capacity) {
		if len(data) > 0 {
			copy(guestBytes(mod, fn, "buffer", buf, uint32(len(data))), data)
		}
	} else {
		inst.pending = bytes.Clone(data)
	}
	return uint64(uint32(len(data)))
}

func hostLog(ctx context.Context, mod api.Module, stack []uint64) {
	inst := instanceFrom(ctx)
	inst.pending = nil
	level := api.DecodeI32(stack[0])
	text := string(guestBytes(mod, "log", "text", uint32(stack[1]), uint32(stack[2])))
	lvl := slog.LevelInfo
	switch {
	case level <= 0:
		lvl = slog.LevelDebug
	case level == 2:
		lvl = slog.LevelWarn
	case level >= 3:
		lvl = slog.LevelError
	}
	inst.p.logger.Log(ctx, lvl, text)
}

func hostNow(ctx context.Context, mod api.Module, stack []uint64) {
	instanceFrom(ctx).pending = nil
	stack[0] = uint64(time.Now().UnixNano())
}

func hostRandom(ctx context.Context, mod api.Module, stack []uint64) {
	instanceFrom(ctx).pending = nil
	b := guestBytes(mod, "random", "buffer", uint32(stack[0]), uint32(stack[1]))
	if _, err := rand.Read(b); err != nil {
		panic(fmt.Errorf("random: %w", err))
	}
}

func hostCounterAdd(ctx context.Context, mod api.Module, stack []uint64) {
	inst := instanceFrom(ctx)
	inst.pending = nil
	name := string(guestBytes(mod, "counter_add", "name", uint32(stack[0]), uint32(stack[1])))
	c, ok := inst.p.counters.Load(name)
	if !ok {
		c, _ = inst.p.counters.LoadOrStore(name, new(atomic.Int64))
	}
	c.(*atomic.Int64).Add(int64(stack[2]))
}

func hostStateGet(ctx context.Context, mod api.Module, stack []uint64) {
	inst := instanceFrom(ctx)
	inst.pending = nil
	key := guestBytes(mod, "state_get", "key", uint32(stack[0]), uint32(stack[1]))
	v, ok := inst.stateGet(key)
	if !ok {
		stack[0] = minusOne
		return
	}
	stack[0] = deliver(inst, mod, "state_get", v, uint32(stack[2]), uint32(stack[3]))
}

func hostStatePut(ctx context.Context, mod api.Module, stack []uint64) {
	inst := instanceFrom(ctx)
	inst.pending = nil
	key := guestBytes(mod, "state_put", "key", uint32(stack[0]), uint32(stack[1]))
	val := guestBytes(mod, "state_put", "value", uint32(stack[2]), uint32(stack[3]))
	inst.statePut(key, val)
	stack[0] = 0
}

func hostStateDelete(ctx context.Context, mod api.Module, stack []uint64) {
	inst := instanceFrom(ctx)
	inst.pending = nil
	inst.stateDelete(guestBytes(mod, "state_delete", "key", uint32(stack[0]), uint32(stack[1])))
	stack[0] = 0
}

func hostStateScan(ctx context.Context, mod api.Module, stack []uint64) {
	inst := instanceFrom(ctx)
	inst.pending = nil
	prefix := guestBytes(mod, "state_scan", "prefix", uint32(stack[0]), uint32(stack[1]))
	merged := map[string][]byte{}
	inst.p.stateMu.Lock()
	inst.p.cfg.State.Scan(prefix, func(k, v []byte) bool {
		merged[string(k)] = bytes.Clone(v)
		return true
	})
	inst.p.stateMu.Unlock()
	for k, v := range inst.overlay {
		if !bytes.HasPrefix([]byte(k), prefix) {
			continue
		}
		if v == nil {
			delete(merged, k)
		} else {
			merged[k] = v
		}
	}
	keys := make([]string, 0, len(merged))
	for k := range merged {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	out := binary.LittleEndian.AppendUint32(nil, uint32(len(keys)))
	for _, k := range keys {
		out = appendBytes(out, []byte(k))
		out = appendBytes(out, merged[k])
	}
	stack[0] = deliver(inst, mod, "state_scan", out, uint32(stack[2]), uint32(stack[3]))
}

func hostTakeResult(ctx context.Context, mod api.Module, stack []uint64) {
	inst := instanceFrom(ctx)
	if inst.pending == nil {
		stack[0] = minusOne
		return
	}
	data := inst.pending
	if uint64(len(data)) <= uint64(uint32(stack[1])) {
		copy(guestBytes(mod, "take_result", "buffer", uint32(stack[0]), uint32(len(data))), data)
		inst.pending = nil
	}
	stack[0] = uint64(uint32(len(data)))
}

// hostAbort is AssemblyScript's env.abort(msg, file, line, col): it traps
// with the message, decoded from AssemblyScript's string layout (UTF-16LE
// code units, byte length in the u32 just before the pointer).
func hostAbort(ctx context.Context, mod api.Module, stack []uint64) {
	msg := asString(mod, uint32(stack[0]))
	file := asString(mod, uint32(stack[1]))
	panic(fmt.Errorf("abort: %s at %s:%d:%d", msg, file, uint32(stack[2]), uint32(stack[3])))
}

func asString(mod api.Module, ptr uint32) string {
	if ptr < 4 {
		return "?"
	}
	n, ok := mod.Memory().ReadUint32Le(ptr - 4)
	if !ok || n > 1<<16 {
		return "?"
	}
	b, ok := mod.Memory().Read(ptr, n&^1)
	if !ok {
		return "?"
	}
	units := make([]uint16, len(b)/2)
	for i := range units {
		units[i] = binary.LittleEndian.Uint16(b[2*i:])
	}
	return string(utf16.Decode(units))
}

func appendBytes(dst, b []byte) []byte {
	dst = binary.LittleEndian.AppendUint32(dst, uint32(len(b)))
	return append(dst, b...)
}

// lineWriter sends what a guest writes to WASI stdout or stderr to the log,
// one record per line. Overlong lines are split at maxLine bytes.
type lineWriter struct {
	logger *slog.Logger
	stream string
	mu     sync.Mutex
	buf    []byte
}

const maxLine = 16 << 10

func newLineWriter(logger *slog.Logger, stream string) *lineWriter {
	return &lineWriter{logger: logger, stream: stream}
}

func (w *lineWriter) Write(b []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf = append(w.buf, b...)
	for {
		i := bytes.IndexByte(w.buf, '\n')
		if i < 0 {
			if len(w.buf) >= maxLine {
				i = maxLine
			} else {
				break
			}
		}
		w.logger.Info(string(w.buf[:i]), "stream", w.stream)
		if i < len(w.buf) && w.buf[i] == '\n' {
			i++
		}
		w.buf = w.buf[:copy(w.buf, w.buf[i:])]
	}
	return len(b), nil
}
