package wasmhost

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"runtime"
	"strings"
	"sync"
	"time"
	"unsafe"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"
	"github.com/tetratelabs/wazero/experimental"
	"github.com/tetratelabs/wazero/sys"

	"github.com/sluicehq/sluice/agent/wasmhost/internal/guard"
)

// maxResultBytes bounds one result copied out of a guest; a bigger claim is
// a fault rather than an allocation the host cannot afford.
const maxResultBytes = 64 << 20

var (
	errDeadline      = errors.New("timed out")
	errInvalidResult = errors.New("invalid result")
)

// instance is one instantiated copy of a plugin's module. It runs one call
// at a time; between calls it sits in its plugin's idle pool.
type instance struct {
	p      *Plugin
	mod    api.Module
	mem    api.Memory
	lm     *linearMemory // backs mem; stays mapped while a call uses it
	buffer api.Function
	// The kind's entry points (nil when not exported).
	process, tick, poll, ack, write api.Function
	stack                           []uint64
	stdout, stderr                  *lineWriter
	stop                            api.MutableGlobal // guardInstrumented only
	raiseOnce                       sync.Once
	// poisoned is set when the stop flag may have been raised: the
	// instance must not be reused even if its call completed.
	poisoned bool

	// Per-call host state: the pending result of §6.1 and the state
	// changes buffered until the call succeeds.
	pending []byte
	overlay map[string][]byte // nil value: deleted
}

type instanceKey struct{}

func instanceFrom(ctx context.Context) *instance {
	inst, _ := ctx.Value(instanceKey{}).(*instance)
	if inst == nil {
		panic(errors.New("host function called outside a plugin call"))
	}
	return inst
}

// newInstance instantiates the module and brings it to the point where it
// can take calls: _initialize, ABI version check, sluice_init with the
// config, and for a source that has been opened, sluice_ack with the
// position it must resume after.
func (p *Plugin) newInstance(ctx context.Context) (*instance, error) {
	inst := &instance{p: p, stack: make([]uint64, 2), lm: newLinearMemory(&p.totals.memory)}
	inst.stdout = newLineWriter(p.logger, "stdout")
	inst.stderr = newLineWriter(p.logger, "stderr")
	mcfg := wazero.NewModuleConfig().
		WithName(fmt.Sprintf("%s#%d", p.name, p.seq.Add(1))).
		WithStartFunctions().
		WithStdout(inst.stdout).
		WithStderr(inst.stderr).
		WithSysWalltime().
		WithSysNanotime().
		WithRandSource(rand.Reader)
	if p.guard != guardNone {
		// A WASI sleep must not outlast the deadline: cut it into short
		// naps so the guard's checks run in between.
		mcfg = mcfg.WithNanosleep(func(ns int64) { time.Sleep(min(time.Duration(ns), 10*time.Millisecond)) })
	}
	// Instantiation runs no guest code (no start functions), so it needs no
	// stop flag, only the deadline for wazero's own work.
	cctx, cancel := context.WithTimeout(ctx, p.cfg.CallTimeout)
	mod, err := p.rt.InstantiateModule(experimental.WithMemoryAllocator(cctx, inst.lm), p.compiled, mcfg)
	inst.lm.release() // the instantiation's use of the memory
	if err != nil {
		err = fmt.Errorf("instantiating: %w", inst.describe(cctx, err))
		cancel()
		return nil, err
	}
	cancel()
	inst.mod = mod
	if p.guard == guardInstrumented {
		g, ok := mod.ExportedGlobal(guard.StopExport).(api.MutableGlobal)
		if !ok {
			mod.Close(context.Background())
			return nil, errors.New("instrumented module lacks its stop flag")
		}
		inst.stop = g
	}
	inst.mem = mod.ExportedMemory("memory")
	inst.buffer = mod.ExportedFunction("sluice_buffer")
	inst.process = mod.ExportedFunction("sluice_process")
	inst.tick = mod.ExportedFunction("sluice_tick")
	inst.poll = mod.ExportedFunction("sluice_poll")
	inst.ack = mod.ExportedFunction("sluice_ack")
	inst.write = mod.ExportedFunction("sluice_write")
	fail := func(err error) (*instance, error) {
		inst.close()
		return nil, err
	}
	plain := func(name string) error {
		cctx, done := inst.callContext(ctx)
		err := mod.ExportedFunction(name).CallWithStack(cctx, inst.stack)
		if err != nil {
			err = fmt.Errorf("%s: %w", name, inst.describe(cctx, err))
		}
		done()
		return err
	}
	if p.hasInit {
		if err := plain("_initialize"); err != nil {
			return fail(err)
		}
	}
	if err := plain("sluice_abi_version"); err != nil {
		return fail(err)
	}
	if v := api.DecodeI32(inst.stack[0]); v != ABIVersion {
		return fail(fmt.Errorf("module is for ABI version %d; this host implements version %d", v, ABIVersion))
	}
	res, err := inst.invokeWithInput(ctx, mod.ExportedFunction("sluice_init"), p.config, 0)
	if err != nil {
		return fail(fmt.Errorf("sluice_init: %w", err))
	}
	if res.Status != StatusOK {
		return fail(fmt.Errorf("sluice_init rejected the config (status %s): %s", res.Status, res.Message))
	}
	inst.discardState() // nothing done during init is committed
	if inst.poisoned {
		return fail(errors.New("init finished just as its deadline passed"))
	}
	if p.kind == KindSource {
		p.mu.Lock()
		opened, pos := p.opened, p.lastPos
		p.mu.Unlock()
		if opened {
			res, err := inst.invokeWithInput(ctx, inst.ack, pos, 0)
			if err != nil {
				return fail(fmt.Errorf("sluice_ack of the resume position: %w", err))
			}
			if res.Status != StatusOK {
				return fail(fmt.Errorf("sluice_ack of the resume position: status %s: %s", res.Status, res.Message))
			}
		}
	}
	return inst, nil
}

func (inst *instance) close() {
	if inst.mod != nil {
		inst.mod.Close(context.Background())
	}
}

// callContext bounds one call by the plugin's deadline and lets host
// functions find the instance that called them. For an instrumented module
// it arms the guard: when the context ends, the stop flag is raised and the
// guest traps at its next check. done must be called when the call returns.
func (inst *instance) callContext(ctx context.Context) (cctx context.Context, done func()) {
	inst.lm.acquire()
	cctx, cancel := context.WithTimeout(context.WithValue(ctx, instanceKey{}, inst), inst.p.cfg.CallTimeout)
	if inst.stop == nil {
		return cctx, func() {
			cancel()
			inst.lm.release()
		}
	}
	disarm := context.AfterFunc(cctx, inst.raiseStop)
	return cctx, func() {
		if !disarm() {
			inst.poisoned = true // the flag is (or is about to be) raised
		}
		cancel()
		inst.lm.release()
	}
}

// raiseStop sets the guard's stop flag: the guest traps at its next check.
// Called from the deadline watcher or from Plugin.Close, at most once.
func (inst *instance) raiseStop() {
	inst.raiseOnce.Do(func() { inst.stop.Set(1) })
}

// invoke calls fn with args and reads the result it returns.
func (inst *instance) invoke(ctx context.Context, fn api.Function, args []uint64, inCount int) (*Result, error) {
	cctx, done := inst.callContext(ctx)
	defer done()
	stack := inst.stack[:2]
	copy(stack, args)
	start := time.Now()
	err := fn.CallWithStack(cctx, stack)
	inst.p.totals.addGuestTime(start)
	if err != nil {
		return nil, inst.describe(cctx, err)
	}
	inst.noteOverrun(cctx)
	return inst.readResult(stack[0], inCount)
}

// invokeWithInput asks the guest for a buffer, copies input into it and
// calls fn(ptr, len).
func (inst *instance) invokeWithInput(ctx context.Context, fn api.Function, input []byte, inCount int) (*Result, error) {
	cctx, done := inst.callContext(ctx)
	defer done()
	stack := inst.stack[:2]
	stack[0] = uint64(len(input))
	if err := inst.buffer.CallWithStack(cctx, stack); err != nil {
		return nil, fmt.Errorf("sluice_buffer: %w", inst.describe(cctx, err))
	}
	ptr := uint32(stack[0])
	if ptr == 0 && len(input) > 0 {
		return nil, fmt.Errorf("sluice_buffer(%d) returned 0: the guest is out of memory", len(input))
	}
	if len(input) > 0 && !inst.mem.Write(ptr, input) {
		return nil, fmt.Errorf("%w: sluice_buffer(%d) returned %#x, outside guest memory of %d bytes",
			errInvalidResult, len(input), ptr, inst.mem.Size())
	}
	stack[0], stack[1] = uint64(ptr), uint64(len(input))
	start := time.Now()
	err := fn.CallWithStack(cctx, stack)
	inst.p.totals.addGuestTime(start)
	if err != nil {
		return nil, inst.describe(cctx, err)
	}
	inst.noteOverrun(cctx)
	return inst.readResult(stack[0], inCount)
}

// noteOverrun logs a trusted plugin's call that finished after its
// deadline: nothing could stop it, but the operator should know.
func (inst *instance) noteOverrun(cctx context.Context) {
	if inst.p.guard == guardNone && errors.Is(cctx.Err(), context.DeadlineExceeded) {
		inst.p.logger.Warn("trusted plugin call overran its deadline; it cannot be stopped", "deadline", inst.p.cfg.CallTimeout)
	}
}

// describe turns an error from a guest call into what the guest did.
func (inst *instance) describe(cctx context.Context, err error) error {
	var exit *sys.ExitError
	if errors.As(err, &exit) {
		switch exit.ExitCode() {
		case sys.ExitCodeDeadlineExceeded:
			return fmt.Errorf("%w: the call ran past its %s deadline and was stopped (a runaway loop?)", errDeadline, inst.p.cfg.CallTimeout)
		case sys.ExitCodeContextCanceled:
			return fmt.Errorf("call canceled: %w", context.Cause(cctx))
		}
		return fmt.Errorf("the guest called proc_exit(%d)", exit.ExitCode())
	}
	if inst.stop != nil && inst.p.isClosed() {
		return errors.New("stopped: the plugin was closed during the call")
	}
	if inst.stop != nil && cctx.Err() != nil {
		// The guard's stop flag made the guest trap.
		if errors.Is(cctx.Err(), context.DeadlineExceeded) {
			return fmt.Errorf("%w: the call ran past its %s deadline and was stopped (a runaway loop?)", errDeadline, inst.p.cfg.CallTimeout)
		}
		return fmt.Errorf("call canceled: %w", context.Cause(cctx))
	}
	msg := err.Error()
	if i := strings.Index(msg, "\nwasm stack trace"); i >= 0 {
		msg = msg[:i]
	}
	msg = strings.TrimSpace(msg)
	if strings.HasPrefix(msg, "wasm error: ") {
		msg = "trap: " + strings.TrimPrefix(msg, "wasm error: ")
	}
	if inst.mem != nil && uint64(inst.mem.Size())+pageSize > inst.p.maxMem {
		msg += fmt.Sprintf("; guest memory is at its limit of %d bytes (memory exhausted?)", inst.p.maxMem)
	}
	if errors.Is(cctx.Err(), context.DeadlineExceeded) {
		// Trusted mode: the guest cannot be stopped, but report the overrun.
		return fmt.Errorf("%w after %s: %s", errDeadline, inst.p.cfg.CallTimeout, msg)
	}
	return errors.New(msg)
}

// readResult validates and copies out the result (ABI.md §5) the guest
// returned as (ptr << 32) | len. inCount is the number of events of the
// input batch, which bounds reject indices.
func (inst *instance) readResult(packed uint64, inCount int) (*Result, error) {
	if packed == 0 {
		return &Result{Status: StatusOK, Batch: []byte{0, 0, 0, 0}}, nil
	}
	ptr, n := uint32(packed>>32), uint32(packed)
	if n > maxResultBytes {
		return nil, fmt.Errorf("%w: result of %d bytes is oversized (limit %d)", errInvalidResult, n, maxResultBytes)
	}
	view, ok := inst.mem.Read(ptr, n)
	if !ok {
		return nil, fmt.Errorf("%w: result region [%#x, %#x) lies outside guest memory of %d bytes",
			errInvalidResult, ptr, uint64(ptr)+uint64(n), inst.mem.Size())
	}
	buf := resultBuffers.Get().(*[]byte)
	*buf = append((*buf)[:0], view...)
	res, err := parseResult(*buf, inCount)
	if err != nil {
		resultBuffers.Put(buf)
		return nil, fmt.Errorf("%w: %v", errInvalidResult, err)
	}
	res.buf = buf
	return res, nil
}

// parseResult decodes result := status message position batch rejects,
// checking every length; the slices of the Result alias buf.
func parseResult(buf []byte, inCount int) (*Result, error) {
	r := frameReader{buf: buf}
	status, err := r.u32("status")
	if err != nil {
		return nil, err
	}
	if status > uint32(StatusRetry) {
		return nil, fmt.Errorf("unknown status %d", status)
	}
	res := &Result{Status: Status(status)}
	msg, err := r.bytes("message")
	if err != nil {
		return nil, err
	}
	res.Message = string(msg)
	if res.Position, err = r.bytes("position"); err != nil {
		return nil, err
	}
	if len(res.Position) == 0 {
		res.Position = nil
	}
	start := r.off
	if err := r.batch(); err != nil {
		return nil, err
	}
	res.Batch = buf[start:r.off:r.off]
	nRejects, err := r.u32("reject count")
	if err != nil {
		return nil, err
	}
	if uint64(nRejects)*8 > uint64(len(buf)-r.off) {
		return nil, fmt.Errorf("reject count %d cannot fit in the %d bytes left", nRejects, len(buf)-r.off)
	}
	if nRejects > 0 {
		res.Rejects = make([]Reject, 0, nRejects)
	}
	prev := -1
	for i := uint32(0); i < nRejects; i++ {
		idx, err := r.u32("reject index")
		if err != nil {
			return nil, err
		}
		if int64(idx) >= int64(inCount) {
			return nil, fmt.Errorf("reject %d names event %d; the input has %d events", i, idx, inCount)
		}
		if int(idx) <= prev {
			return nil, fmt.Errorf("reject %d names event %d after event %d; indices must ascend", i, idx, prev)
		}
		prev = int(idx)
		reason, err := r.bytes("reject reason")
		if err != nil {
			return nil, err
		}
		res.Rejects = append(res.Rejects, Reject{Index: int(idx), Reason: string(reason)})
	}
	if r.off != len(buf) {
		return nil, fmt.Errorf("%d trailing bytes after the rejects", len(buf)-r.off)
	}
	return res, nil
}

// frameReader walks length-prefixed frames without trusting any length.
type frameReader struct {
	buf []byte
	off int
}

func (r *frameReader) u32(what string) (uint32, error) {
	if len(r.buf)-r.off < 4 {
		return 0, fmt.Errorf("%s truncated at byte %d of %d", what, r.off, len(r.buf))
	}
	v := binary.LittleEndian.Uint32(r.buf[r.off:])
	r.off += 4
	return v, nil
}

func (r *frameReader) bytes(what string) ([]byte, error) {
	start := r.off
	if err := r.skip(what); err != nil {
		return nil, err
	}
	return r.buf[start+4 : r.off : r.off], nil
}

// skip passes over one length-prefixed value. what names it in errors only:
// the happy path does not build strings.
func (r *frameReader) skip(what string) error {
	if len(r.buf)-r.off < 4 {
		return fmt.Errorf("%s length truncated at byte %d of %d", what, r.off, len(r.buf))
	}
	n := binary.LittleEndian.Uint32(r.buf[r.off:])
	if uint64(n) > uint64(len(r.buf)-r.off-4) {
		return fmt.Errorf("%s length %d at byte %d runs past the end of the %d-byte result", what, n, r.off, len(r.buf))
	}
	r.off += 4 + int(n)
	return nil
}

// batch skips one event batch (agent/event wire form), checking it. The
// fast path runs over a valid batch without calls or error formatting; only
// a batch it refuses is walked again to say what is wrong.
func (r *frameReader) batch() error {
	if end, ok := skipBatch(r.buf, r.off); ok {
		r.off = end
		return nil
	}
	return r.batchSlow()
}

// skipBatch returns the end of the valid batch starting at buf[off:]. It
// is the hottest loop of the host (one pass over every output event), so on
// little-endian machines that load unaligned words natively it reads the
// lengths without bounds checks; FuzzSkipBatch holds it to the portable
// version.
func skipBatch(buf []byte, off int) (int, bool) {
	if unalignedLittleEndian {
		return skipBatchUnchecked(buf, off)
	}
	return skipBatchPortable(buf, off)
}

var unalignedLittleEndian = (runtime.GOARCH == "amd64" || runtime.GOARCH == "arm64") &&
	binary.NativeEndian.Uint16([]byte{1, 0}) == 1

func skipBatchPortable(buf []byte, off int) (int, bool) {
	b := buf[off:]
	if len(b) < 4 {
		return 0, false
	}
	count := binary.LittleEndian.Uint32(b)
	b = b[4:]
	if uint64(count)*20 > uint64(len(b)) {
		return 0, false
	}
	for range count {
		if len(b) < 20 { // time, key length, body length, header count
			return 0, false
		}
		k := uint(binary.LittleEndian.Uint32(b[8:12]))
		b = b[12:]
		if k > uint(len(b)-8) {
			return 0, false
		}
		b = b[k:]
		v := uint(binary.LittleEndian.Uint32(b[:4]))
		b = b[4:]
		if v > uint(len(b)-4) {
			return 0, false
		}
		b = b[v:]
		nh := uint64(binary.LittleEndian.Uint32(b[:4]))
		b = b[4:]
		for range 2 * nh {
			if len(b) < 4 {
				return 0, false
			}
			l := uint(binary.LittleEndian.Uint32(b[:4]))
			b = b[4:]
			if l > uint(len(b)) {
				return 0, false
			}
			b = b[l:]
		}
	}
	return len(buf) - len(b), true
}

// skipBatchUnchecked is skipBatchPortable with each load proven in bounds
// by the comparison before it instead of by the compiler: rest is always
// len(buf)-off, and every load of 4 bytes at off follows a check that
// rest >= 4 (or more).
func skipBatchUnchecked(buf []byte, off int) (int, bool) {
	n := len(buf)
	if off > n || n-off < 4 {
		return 0, false
	}
	base := unsafe.Pointer(unsafe.SliceData(buf))
	load := func(at int) uint { return uint(*(*uint32)(unsafe.Add(base, at))) }
	count := load(off)
	off += 4
	if uint64(count)*20 > uint64(n-off) {
		return 0, false
	}
	for range count {
		if n-off < 20 {
			return 0, false
		}
		k := load(off + 8)
		off += 12
		if k > uint(n-off-8) { // n-off >= 8 here
			return 0, false
		}
		off += int(k)
		v := load(off) // n-off >= 8
		off += 4
		if v > uint(n-off-4) { // n-off >= 4
			return 0, false
		}
		off += int(v)
		nh := uint64(load(off)) // n-off >= 4
		off += 4
		for range 2 * nh {
			if n-off < 4 {
				return 0, false
			}
			l := load(off)
			off += 4
			if l > uint(n-off) {
				return 0, false
			}
			off += int(l)
		}
	}
	return off, true
}

func (r *frameReader) batchSlow() error {
	count, err := r.u32("batch count")
	if err != nil {
		return err
	}
	const minEvent = 8 + 4 + 4 + 4
	if uint64(count)*minEvent > uint64(len(r.buf)-r.off) {
		return fmt.Errorf("batch claims %d events but only %d bytes follow", count, len(r.buf)-r.off)
	}
	for i := uint32(0); i < count; i++ {
		if len(r.buf)-r.off < 8 {
			return fmt.Errorf("output event %d: time truncated at byte %d", i, r.off)
		}
		r.off += 8
		if err := r.skip("key"); err != nil {
			return fmt.Errorf("output event %d: %w", i, err)
		}
		if err := r.skip("body"); err != nil {
			return fmt.Errorf("output event %d: %w", i, err)
		}
		nh, err := r.u32("header count")
		if err != nil {
			return fmt.Errorf("output event %d: %w", i, err)
		}
		if uint64(nh)*8 > uint64(len(r.buf)-r.off) {
			return fmt.Errorf("output event %d claims %d headers but only %d bytes follow", i, nh, len(r.buf)-r.off)
		}
		for h := uint32(0); h < nh; h++ {
			if err := r.skip("header name"); err != nil {
				return fmt.Errorf("output event %d: %w", i, err)
			}
			if err := r.skip("header value"); err != nil {
				return fmt.Errorf("output event %d: %w", i, err)
			}
		}
	}
	return nil
}

// inputCount is the event count of an input batch, 0 if it has none.
func inputCount(batch []byte) int {
	if len(batch) < 4 {
		return 0
	}
	return int(binary.LittleEndian.Uint32(batch))
}

// State buffering (ABI.md §6.2): reads see the call's own writes first.

func (inst *instance) stateGet(key []byte) ([]byte, bool) {
	if v, ok := inst.overlay[string(key)]; ok {
		return v, v != nil
	}
	inst.p.stateMu.Lock()
	defer inst.p.stateMu.Unlock()
	return inst.p.cfg.State.Get(key)
}

func (inst *instance) statePut(key, value []byte) {
	if inst.overlay == nil {
		inst.overlay = map[string][]byte{}
	}
	inst.overlay[string(key)] = append([]byte{}, value...)
}

func (inst *instance) stateDelete(key []byte) {
	if inst.overlay == nil {
		inst.overlay = map[string][]byte{}
	}
	inst.overlay[string(key)] = nil
}

func (inst *instance) discardState() {
	inst.overlay = nil
	inst.pending = nil
}

func (p *Plugin) commitState(inst *instance) error {
	if len(inst.overlay) == 0 {
		return nil
	}
	p.stateMu.Lock()
	defer p.stateMu.Unlock()
	for k, v := range inst.overlay {
		if v == nil {
			p.cfg.State.Delete([]byte(k))
		} else {
			p.cfg.State.Put([]byte(k), v)
		}
	}
	inst.overlay = nil
	return nil
}
