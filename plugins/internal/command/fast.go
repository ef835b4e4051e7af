package command

import (
	"unicode/utf8"
	"unsafe"
)

// fastDecode decodes a flat JSON object whose names are the record's field
// names, exactly spelled, each at most once, and whose values are strings
// without escapes or numbers. It reports false, leaving r partly filled,
// for anything else; Parse then uses encoding/json.
func fastDecode(b []byte, r *record, alias bool) bool {
	i := skipSpace(b, 0)
	if i >= len(b) || b[i] != '{' {
		return false
	}
	i = skipSpace(b, i+1)
	if i < len(b) && b[i] == '}' {
		return false // empty object: let encoding/json say what is missing
	}
	var seen int
	for {
		nameB, j, ok := plainString(b, i)
		name := string(nameB) // compared only: no allocation
		if !ok {
			return false
		}
		i = skipSpace(b, j)
		if i >= len(b) || b[i] != ':' {
			return false
		}
		i = skipSpace(b, i+1)
		if i >= len(b) {
			return false
		}
		var str string
		var num []byte
		if b[i] == '"' {
			var sb []byte
			if sb, j, ok = plainString(b, i); !ok {
				return false
			}
			if name == "op" {
				str = intern(sb)
			} else {
				str = toString(sb, alias)
			}
		} else {
			if j, ok = number(b, i); !ok {
				return false
			}
			num = b[i:j:j]
		}
		i = j
		bit, isStr := fieldBit(name)
		if bit == 0 || seen&bit != 0 || (isStr && num != nil) {
			return false
		}
		seen |= bit
		r.has |= bit
		switch bit {
		case fOp:
			r.op = str
		case fKey:
			r.key = str
		case fField:
			r.field = str
		case fMember:
			r.member = str
		case fChannel:
			r.channel = str
		case fMessage:
			r.message = str
		case fValue:
			if num != nil {
				r.value = num
			} else {
				r.value = quote(str)
			}
		case fTTL:
			if num == nil {
				return false
			}
			r.ttl = num
		default:
			return false
		}
		i = skipSpace(b, i)
		if i >= len(b) {
			return false
		}
		if b[i] == '}' {
			return skipSpace(b, i+1) == len(b)
		}
		if b[i] != ',' {
			return false
		}
		i = skipSpace(b, i+1)
	}
}

const fOp = 1 << 8

// fieldBit returns the bit of a field name and whether its value must be a
// string; 0 for names the fast path does not handle.
func fieldBit(name string) (int, bool) {
	switch name {
	case "op":
		return fOp, true
	case "key":
		return fKey, true
	case "field":
		return fField, true
	case "member":
		return fMember, true
	case "value":
		return fValue, false
	case "ttl_ms":
		return fTTL, false
	case "channel":
		return fChannel, true
	case "message":
		return fMessage, true
	}
	return 0, false
}

// quote rebuilds the JSON text of a plain string (no escapes needed).
func quote(s string) []byte {
	q := make([]byte, 0, len(s)+2)
	q = append(q, '"')
	q = append(q, s...)
	return append(q, '"')
}

func skipSpace(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\n' || b[i] == '\r') {
		i++
	}
	return i
}

// intern returns the constant for a known op, so the usual record does
// not allocate its op.
func intern(op []byte) string {
	for _, o := range Ops {
		if o == string(op) {
			return o
		}
	}
	return string(op)
}

// plainString reads a JSON string at b[i] that has no escapes and no
// control characters and is valid UTF-8.
func plainString(b []byte, i int) ([]byte, int, bool) {
	if i >= len(b) || b[i] != '"' {
		return nil, 0, false
	}
	j := i + 1
	// One table look-up a byte over the usual all-ASCII run; UTF-8 is
	// validated only for strings that have a byte ≥ 0x80.
	for j < len(b) && plainByte[b[j]] == byteASCII {
		j++
	}
	utf := false
	for ; j < len(b); j++ {
		switch plainByte[b[j]] {
		case byteQuote:
			s := b[i+1 : j]
			if utf && !utf8.Valid(s) {
				return nil, 0, false
			}
			return s, j + 1, true
		case byteStop:
			return nil, 0, false
		case byteHigh:
			utf = true
		}
	}
	return nil, 0, false
}

// Byte classes inside a JSON string, for plainString.
const (
	byteASCII = iota // printable ASCII other than '"' and '\'
	byteQuote        // '"': the end
	byteStop         // '\' or a control character: not a plain string
	byteHigh         // ≥ 0x80: part of a UTF-8 sequence
)

var plainByte = func() (t [256]uint8) {
	for c := range t {
		switch {
		case c == '"':
			t[c] = byteQuote
		case c == '\\' || c < 0x20:
			t[c] = byteStop
		case c >= 0x80:
			t[c] = byteHigh
		}
	}
	return t
}()

// toString copies b, or with alias returns a string sharing b's memory.
func toString(b []byte, alias bool) string {
	if alias && len(b) > 0 {
		return unsafe.String(&b[0], len(b))
	}
	return string(b)
}

// number reads a JSON number at b[i]:
// -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?
func number(b []byte, i int) (int, bool) {
	digits := func(i int) int {
		for i < len(b) && b[i] >= '0' && b[i] <= '9' {
			i++
		}
		return i
	}
	if i < len(b) && b[i] == '-' {
		i++
	}
	switch {
	case i < len(b) && b[i] == '0':
		i++
	case i < len(b) && b[i] >= '1' && b[i] <= '9':
		i = digits(i)
	default:
		return 0, false
	}
	if i < len(b) && b[i] == '.' {
		j := digits(i + 1)
		if j == i+1 {
			return 0, false
		}
		i = j
	}
	if i < len(b) && (b[i] == 'e' || b[i] == 'E') {
		i++
		if i < len(b) && (b[i] == '+' || b[i] == '-') {
			i++
		}
		j := digits(i)
		if j == i {
			return 0, false
		}
		i = j
	}
	return i, true
}
