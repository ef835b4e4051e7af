package guard

import (
	"errors"
	"fmt"
)

type reader struct {
	b   []byte
	off int
}

var errEOF = errors.New("unexpected end")

func (r *reader) byte() (byte, error) {
	if r.off >= len(r.b) {
		return 0, errEOF
	}
	c := r.b[r.off]
	r.off++
	return c, nil
}

func (r *reader) take(n int) ([]byte, error) {
	if n < 0 || n > len(r.b)-r.off {
		return nil, errEOF
	}
	b := r.b[r.off : r.off+n]
	r.off += n
	return b, nil
}

// leb skips one LEB128 number of at most maxBytes bytes and returns its
// unsigned value (meaningful for u32 only).
func (r *reader) leb(maxBytes int) (uint64, error) {
	var v uint64
	for i := 0; i < maxBytes; i++ {
		c, err := r.byte()
		if err != nil {
			return 0, err
		}
		v |= uint64(c&0x7f) << (7 * i)
		if c&0x80 == 0 {
			return v, nil
		}
	}
	return 0, errors.New("LEB128 number too long")
}

func (r *reader) u32() (uint32, error) {
	v, err := r.leb(5)
	return uint32(v), err
}

func readU32(b []byte) (uint32, []byte, error) {
	r := reader{b: b}
	v, err := r.u32()
	return v, b[r.off:], err
}

func (r *reader) limits() error {
	flags, err := r.byte()
	if err != nil {
		return err
	}
	if _, err := r.leb(10); err != nil {
		return err
	}
	if flags&1 != 0 {
		_, err = r.leb(10)
	}
	return err
}

// valtype skips a value type, including (ref null? ht) forms.
func (r *reader) valtype() error {
	t, err := r.byte()
	if err != nil {
		return err
	}
	if t == 0x63 || t == 0x64 { // ref null ht / ref ht
		_, err = r.leb(5) // heap type, s33
	}
	return err
}

func (r *reader) memarg() error {
	align, err := r.u32()
	if err != nil {
		return err
	}
	if align&0x40 != 0 { // multi-memory: memory index follows
		if _, err := r.u32(); err != nil {
			return err
		}
	}
	_, err = r.leb(10) // offset (u64 for memory64)
	return err
}

// immediates skips the immediates of the instruction whose opcode was just
// read. An opcode it does not know is an error, never a guess.
func (r *reader) immediates(op byte) error {
	var err error
	switch {
	case op == 0x02 || op == 0x03 || op == 0x04 || op == 0x06: // block loop if try: blocktype
		_, err = r.leb(5) // 0x40, a valtype byte or an s33 type index
	case op == 0x00 || op == 0x01 || op == 0x05 || op == 0x0b || op == 0x0f || op == 0x19 ||
		op == 0x1a || op == 0x1b || op == 0xd1 || op == 0x0a:
		// no immediates
	case op == 0x07 || op == 0x08 || op == 0x09 || op == 0x0c || op == 0x0d || op == 0x10 ||
		op == 0x12 || op == 0x18 || (op >= 0x20 && op <= 0x26) || op == 0xd2 || op == 0x3f || op == 0x40:
		_, err = r.u32()
	case op == 0x0e: // br_table
		var n uint32
		if n, err = r.u32(); err == nil {
			for i := uint32(0); i <= n && err == nil; i++ {
				_, err = r.u32()
			}
		}
	case op == 0x11 || op == 0x13: // call_indirect, return_call_indirect: type, table
		if _, err = r.u32(); err == nil {
			_, err = r.u32()
		}
	case op == 0x1c: // select t*
		var n uint32
		if n, err = r.u32(); err == nil {
			for i := uint32(0); i < n && err == nil; i++ {
				err = r.valtype()
			}
		}
	case op >= 0x28 && op <= 0x3e:
		err = r.memarg()
	case op == 0x41:
		_, err = r.leb(5)
	case op == 0x42:
		_, err = r.leb(10)
	case op == 0x43:
		_, err = r.take(4)
	case op == 0x44:
		_, err = r.take(8)
	case op >= 0x45 && op <= 0xc4:
		// numeric, no immediates
	case op == 0xd0: // ref.null ht
		_, err = r.leb(5)
	case op == 0xfc:
		err = r.prefixFC()
	case op == 0xfd:
		err = r.prefixFD()
	case op == 0xfe:
		err = r.prefixFE()
	default:
		return fmt.Errorf("unknown opcode %#x at byte %d", op, r.off-1)
	}
	return err
}

func (r *reader) prefixFC() error {
	sub, err := r.u32()
	if err != nil {
		return err
	}
	switch {
	case sub <= 7: // saturating truncations
		return nil
	case sub == 8 || sub == 10 || sub == 12 || sub == 14: // two indices
		if _, err := r.u32(); err != nil {
			return err
		}
		_, err = r.u32()
		return err
	case sub == 9 || sub == 11 || sub == 13 || sub == 15 || sub == 16 || sub == 17:
		_, err = r.u32()
		return err
	}
	return fmt.Errorf("unknown opcode 0xfc %d", sub)
}

func (r *reader) prefixFD() error {
	sub, err := r.u32()
	if err != nil {
		return err
	}
	switch {
	case sub <= 11 || sub == 92 || sub == 93: // loads, store, load zero: memarg
		return r.memarg()
	case sub == 12 || sub == 13: // v128.const, i8x16.shuffle
		_, err = r.take(16)
		return err
	case sub >= 21 && sub <= 34: // extract/replace lane
		_, err = r.take(1)
		return err
	case sub >= 84 && sub <= 91: // load/store lane: memarg, lane
		if err := r.memarg(); err != nil {
			return err
		}
		_, err = r.take(1)
		return err
	case sub <= 275: // every other SIMD instruction has no immediates
		return nil
	}
	return fmt.Errorf("unknown opcode 0xfd %d", sub)
}

func (r *reader) prefixFE() error {
	sub, err := r.u32()
	if err != nil {
		return err
	}
	switch {
	case sub == 3: // atomic.fence
		_, err = r.take(1)
		return err
	case sub <= 2 || (sub >= 0x10 && sub <= 0x4e):
		return r.memarg()
	}
	return fmt.Errorf("unknown opcode 0xfe %d", sub)
}

func appendU32(b []byte, v uint32) []byte {
	for {
		c := byte(v & 0x7f)
		v >>= 7
		if v != 0 {
			b = append(b, c|0x80)
			continue
		}
		return append(b, c)
	}
}

func appendS32(b []byte, v int32) []byte {
	for {
		c := byte(v & 0x7f)
		v >>= 7
		if (v == 0 && c&0x40 == 0) || (v == -1 && c&0x40 != 0) {
			return append(b, c)
		}
		b = append(b, c|0x80)
	}
}
