// Package guard rewrites a WebAssembly module so that a runaway guest can be
// stopped cheaply from outside, without wazero's per-iteration exit to Go
// (docs/adr/0002-wasm-guard.md).
//
// Instrument adds two mutable i32 globals: a fuel counter and a stop flag,
// exported as StopExport. At every function entry and every loop header it
// inserts
//
//	global.get $fuel
//	i32.eqz
//	if
//	  i32.const 0
//	  memory.grow   ;; grow by 0: leaves native code for Go, so GC can run
//	  drop
//	  global.get $stop
//	  if unreachable end
//	  i32.const Fuel
//	  global.set $fuel
//	end
//	global.get $fuel  i32.const 1  i32.sub  global.set $fuel
//
// so the hot path is two global loads, a store and a predictable branch,
// and every Fuel iterations the guest passes through Go (wazero implements
// memory.grow with a call into Go), which lets a garbage collection stop
// it and lets it see the stop flag the host set when its deadline passed.
//
// No function, type or existing global index changes: the new globals are
// appended after the module's own, and only code bodies, the global section
// and the export section are rewritten. A module using an instruction this
// decoder does not know is refused with an error; the host then falls back
// to wazero's own guard.
package guard

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// StopExport is the export name of the stop flag: set it to 1 and the guest
// traps (unreachable) within Fuel loop iterations or function entries.
const StopExport = "__sluice_guard_stop"

// Fuel is how many loop iterations and function entries run between two
// passes through Go.
const Fuel = 1 << 16

// Section ids.
const (
	secCustom = 0
	secImport = 2
	secMemory = 5
	secGlobal = 6
	secExport = 7
	secCode   = 10
	secTag    = 13
)

// order is the position of a section id in the module, per the spec
// (the tag section sits between memory and global).
func order(id byte) int {
	switch id {
	case secTag:
		return 55 // after memory (5), before global (6)
	case 12: // data count: after element (9), before code (10)
		return 95
	}
	return int(id) * 10
}

type section struct {
	id   byte
	body []byte
}

// Instrument returns the rewritten module.
func Instrument(wasm []byte) ([]byte, error) {
	if len(wasm) < 8 || string(wasm[:4]) != "\x00asm" || binary.LittleEndian.Uint32(wasm[4:]) != 1 {
		return nil, errors.New("guard: not a WebAssembly 1.0 binary module")
	}
	var sections []section
	r := reader{b: wasm, off: 8}
	for r.off < len(r.b) {
		id, err := r.byte()
		if err != nil {
			return nil, err
		}
		n, err := r.u32()
		if err != nil {
			return nil, err
		}
		body, err := r.take(int(n))
		if err != nil {
			return nil, fmt.Errorf("guard: section %d: %w", id, err)
		}
		sections = append(sections, section{id, body})
	}

	importedGlobals, definedGlobals := 0, 0
	hasMemory := false
	for _, s := range sections {
		switch s.id {
		case secImport:
			g, m, err := countImports(s.body)
			if err != nil {
				return nil, err
			}
			importedGlobals += g
			hasMemory = hasMemory || m
		case secGlobal:
			n, _, err := readU32(s.body)
			if err != nil {
				return nil, err
			}
			definedGlobals = int(n)
		case secMemory:
			n, _, err := readU32(s.body)
			if err != nil {
				return nil, err
			}
			hasMemory = hasMemory || n > 0
		}
	}
	if !hasMemory {
		return nil, errors.New("guard: module has no memory")
	}
	fuelIdx := uint32(importedGlobals + definedGlobals)
	stopIdx := fuelIdx + 1
	check := checkSequence(fuelIdx, stopIdx)

	newGlobals := func(count uint32, rest []byte) []byte {
		out := appendU32(nil, count+2)
		out = append(out, rest...)
		// (mut i32) fuel = Fuel; (mut i32) stop = 0
		out = append(out, 0x7f, 0x01, 0x41)
		out = appendS32(out, Fuel)
		out = append(out, 0x0b, 0x7f, 0x01, 0x41, 0x00, 0x0b)
		return out
	}
	stopExport := append(appendU32(nil, uint32(len(StopExport))), StopExport...)
	stopExport = append(stopExport, 0x03)
	stopExport = appendU32(stopExport, stopIdx)

	sawGlobal, sawExport := false, false
	var out []section
	for _, s := range sections {
		switch s.id {
		case secGlobal:
			n, rest, _ := readU32(s.body)
			s.body = newGlobals(n, rest)
			sawGlobal = true
		case secExport:
			n, rest, err := readU32(s.body)
			if err != nil {
				return nil, err
			}
			body := appendU32(nil, n+1)
			body = append(body, rest...)
			s.body = append(body, stopExport...)
			sawExport = true
		case secCode:
			body, err := instrumentCode(s.body, check)
			if err != nil {
				return nil, err
			}
			s.body = body
		}
		out = append(out, s)
	}
	if !sawGlobal {
		out = insertSection(out, section{secGlobal, newGlobals(0, nil)})
	}
	if !sawExport {
		out = insertSection(out, section{secExport, append(appendU32(nil, 1), stopExport...)})
	}
	res := append([]byte{}, wasm[:8]...)
	for _, s := range out {
		res = append(res, s.id)
		res = appendU32(res, uint32(len(s.body)))
		res = append(res, s.body...)
	}
	return res, nil
}

// insertSection puts s before the first non-custom section that must follow it.
func insertSection(secs []section, s section) []section {
	for i, x := range secs {
		if x.id != secCustom && order(x.id) > order(s.id) {
			return append(secs[:i], append([]section{s}, secs[i:]...)...)
		}
	}
	return append(secs, s)
}

func checkSequence(fuel, stop uint32) []byte {
	var b []byte
	b = append(b, 0x23) // global.get fuel
	b = appendU32(b, fuel)
	b = append(b, 0x45, 0x04, 0x40) // i32.eqz; if (empty)
	b = append(b, 0x41, 0x00, 0x40, 0x00, 0x1a)
	b = append(b, 0x23) // global.get stop
	b = appendU32(b, stop)
	b = append(b, 0x04, 0x40, 0x00, 0x0b) // if unreachable end
	b = append(b, 0x41)
	b = appendS32(b, Fuel)
	b = append(b, 0x24) // global.set fuel
	b = appendU32(b, fuel)
	b = append(b, 0x0b) // end
	b = append(b, 0x23)
	b = appendU32(b, fuel)
	b = append(b, 0x41, 0x01, 0x6b, 0x24) // i32.const 1; i32.sub; global.set
	b = appendU32(b, fuel)
	return b
}

// countImports returns the number of imported globals and whether a memory
// is imported.
func countImports(body []byte) (globals int, memory bool, err error) {
	r := reader{b: body}
	n, err := r.u32()
	if err != nil {
		return 0, false, err
	}
	for range n {
		for range 2 { // module and field names
			l, err := r.u32()
			if err != nil {
				return 0, false, err
			}
			if _, err := r.take(int(l)); err != nil {
				return 0, false, err
			}
		}
		kind, err := r.byte()
		if err != nil {
			return 0, false, err
		}
		switch kind {
		case 0x00: // func: type index
			_, err = r.u32()
		case 0x01: // table: reftype limits
			if _, err = r.byte(); err == nil {
				err = r.limits()
			}
		case 0x02:
			memory = true
			err = r.limits()
		case 0x03: // global: valtype mut
			globals++
			_, err = r.take(2)
		case 0x04: // tag: attribute typeidx
			if _, err = r.byte(); err == nil {
				_, err = r.u32()
			}
		default:
			err = fmt.Errorf("guard: unknown import kind %#x", kind)
		}
		if err != nil {
			return 0, false, err
		}
	}
	return globals, memory, nil
}

// instrumentCode inserts check at the start of every function body and
// after every loop instruction.
func instrumentCode(body []byte, check []byte) ([]byte, error) {
	r := reader{b: body}
	n, err := r.u32()
	if err != nil {
		return nil, err
	}
	out := appendU32(make([]byte, 0, len(body)+len(body)/8), n)
	var fn []byte
	for i := range n {
		size, err := r.u32()
		if err != nil {
			return nil, err
		}
		code, err := r.take(int(size))
		if err != nil {
			return nil, fmt.Errorf("guard: function %d: %w", i, err)
		}
		fn, err = instrumentFunction(fn[:0], code, check)
		if err != nil {
			return nil, fmt.Errorf("guard: function body %d: %w", i, err)
		}
		out = appendU32(out, uint32(len(fn)))
		out = append(out, fn...)
	}
	if r.off != len(r.b) {
		return nil, errors.New("guard: trailing bytes in the code section")
	}
	return out, nil
}

func instrumentFunction(out, code, check []byte) ([]byte, error) {
	r := reader{b: code}
	nLocals, err := r.u32()
	if err != nil {
		return nil, err
	}
	for range nLocals {
		if _, err := r.u32(); err != nil {
			return nil, err
		}
		if err := r.valtype(); err != nil {
			return nil, err
		}
	}
	out = append(out, code[:r.off]...)
	out = append(out, check...)
	last := r.off
	for r.off < len(r.b) {
		op, err := r.byte()
		if err != nil {
			return nil, err
		}
		isLoop := op == 0x03
		if err := r.immediates(op); err != nil {
			return nil, err
		}
		if isLoop {
			out = append(out, code[last:r.off]...)
			out = append(out, check...)
			last = r.off
		}
	}
	return append(out, code[last:]...), nil
}
