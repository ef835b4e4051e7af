package wasmhost

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"strings"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"
	"github.com/tetratelabs/wazero/sys"
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
	buffer api.Function
	// The kind's entry points (nil when not exported).
	process, tick, poll, ack, write api.Function
	stack                           []uint64
	stdout, stderr                  *lineWriter

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
	inst := &instance{p: p, stack: make([]uint64, 2)}
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
	cctx, cancel := inst.callContext(ctx)
	defer cancel()
	mod, err := p.rt.InstantiateModule(cctx, p.compiled, mcfg)
	if err != nil {
		return nil, fmt.Errorf("instantiating: %w", inst.describe(cctx, err))
	}
	inst.mod = mod
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
	if p.hasInit {
		if err := mod.ExportedFunction("_initialize").CallWithStack(cctx, inst.stack); err != nil {
			return fail(fmt.Errorf("_initialize: %w", inst.describe(cctx, err)))
		}
	}
	if err := mod.ExportedFunction("sluice_abi_version").CallWithStack(cctx, inst.stack); err != nil {
		return fail(fmt.Errorf("sluice_abi_version: %w", inst.describe(cctx, err)))
	}
	if v := api.DecodeI32(inst.stack[0]); v != ABIVersion {
		return fail(fmt.Errorf("module is for ABI version %d; this host implements version %d", v, ABIVersion))
	}
	cancel()
	res, err := inst.invokeWithInput(ctx, mod.ExportedFunction("sluice_init"), p.config, 0)
	if err != nil {
		return fail(fmt.Errorf("sluice_init: %w", err))
	}
	if res.Status != StatusOK {
		return fail(fmt.Errorf("sluice_init rejected the config (status %s): %s", res.Status, res.Message))
	}
	inst.discardState() // nothing done during init is committed
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
// functions find the instance that called them.
func (inst *instance) callContext(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.WithValue(ctx, instanceKey{}, inst), inst.p.cfg.CallTimeout)
}

// invoke calls fn with args and reads the result it returns.
func (inst *instance) invoke(ctx context.Context, fn api.Function, args []uint64, inCount int) (*Result, error) {
	cctx, cancel := inst.callContext(ctx)
	defer cancel()
	stack := inst.stack[:2]
	copy(stack, args)
	if err := fn.CallWithStack(cctx, stack); err != nil {
		return nil, inst.describe(cctx, err)
	}
	return inst.readResult(stack[0], inCount)
}

// invokeWithInput asks the guest for a buffer, copies input into it and
// calls fn(ptr, len).
func (inst *instance) invokeWithInput(ctx context.Context, fn api.Function, input []byte, inCount int) (*Result, error) {
	cctx, cancel := inst.callContext(ctx)
	defer cancel()
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
	if err := fn.CallWithStack(cctx, stack); err != nil {
		return nil, inst.describe(cctx, err)
	}
	return inst.readResult(stack[0], inCount)
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
	res, err := parseResult(bytes.Clone(view), inCount)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", errInvalidResult, err)
	}
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
	n, err := r.u32(what + " length")
	if err != nil {
		return nil, err
	}
	if uint64(n) > uint64(len(r.buf)-r.off) {
		return nil, fmt.Errorf("%s length %d at byte %d runs past the end of the %d-byte result", what, n, r.off-4, len(r.buf))
	}
	b := r.buf[r.off : r.off+int(n) : r.off+int(n)]
	r.off += int(n)
	return b, nil
}

func (r *frameReader) skip(what string) error {
	n, err := r.u32(what + " length")
	if err != nil {
		return err
	}
	if uint64(n) > uint64(len(r.buf)-r.off) {
		return fmt.Errorf("%s length %d at byte %d runs past the end of the %d-byte result", what, n, r.off-4, len(r.buf))
	}
	r.off += int(n)
	return nil
}

// batch skips one event batch (agent/event wire form), checking it.
func (r *frameReader) batch() error {
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
		if err := r.skip("output event key"); err != nil {
			return fmt.Errorf("output event %d: %w", i, err)
		}
		if err := r.skip("output event body"); err != nil {
			return fmt.Errorf("output event %d: %w", i, err)
		}
		nh, err := r.u32("output event header count")
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
