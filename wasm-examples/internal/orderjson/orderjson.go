// Package orderjson parses and normalises order lines for the Go examples
// (order-parse, order-stats/go). It is the guest-side twin of the native
// reference in internal/orders and must behave byte for byte like it (and
// like order-stats/c): orderjson_test.go checks that on generated and fuzzed
// lines. The format and its rules: wasm-examples/order-parse/README.md.
package orderjson

import (
	"encoding/binary"
	"errors"
	"math/bits"
	"strconv"
)

// Fields is one validated order. Its byte slices alias the parsed line and
// hold the JSON string contents exactly as written (escape sequences are
// validated but kept, not decoded), so they can be copied into JSON output
// unchanged.
type Fields struct {
	TS         []byte // as written, e.g. 2026-11-25T12:00:00.123Z
	TimeMs     int64  // TS as unix milliseconds
	OrderID    []byte
	UserID     int64
	SKU        []byte
	Category   []byte
	Qty        int64
	PriceCents int64
	City       []byte
	Status     []byte
}

// RevenueCents is qty × price, in integer cents.
func (f *Fields) RevenueCents() int64 { return f.Qty * f.PriceCents }

// Minute is the minute window the order belongs to, in the form used in
// result keys: 2026-11-25T12:00 (UTC).
func (f *Fields) Minute() []byte { return f.TS[:16] }

// Limits that keep every integer far from overflow in all implementations.
const (
	maxQty        = 1_000_000
	maxPriceUnits = 100_000_000 // price below 100,000,000.00
	maxUserID     = 1<<53 - 1
)

// ParseError says why a line is not a valid order. Reason is the text the
// examples put in their rejects; it is the same in every implementation.
type ParseError struct{ Reason string }

func (e *ParseError) Error() string { return e.Reason }

func fail(reason string) error { return &ParseError{Reason: reason} }

// field bits, in the order of the canonical form.
const (
	fTS = 1 << iota
	fOrderID
	fUserID
	fSKU
	fCategory
	fQty
	fPrice
	fCity
	fStatus
	fAll = 1<<iota - 1
)

var fieldNames = [...]string{"ts", "order_id", "user_id", "sku", "category", "qty", "price", "city", "status"}

// usualNames are the fields in the order of the order log and of the
// canonical form, each as "name":.
var usualNames = [...]string{`"ts":`, `"order_id":`, `"user_id":`, `"sku":`, `"category":`, `"qty":`, `"price":`, `"city":`, `"status":`}

// Parse validates one order line and fills f. Leading and trailing JSON
// whitespace (including a trailing \r or \n) is allowed. Unknown fields are
// skipped; each of the nine known fields must appear exactly once.
func Parse(line []byte, f *Fields) error {
	p := parser{b: line}
	p.ws()
	if p.i >= len(p.b) || p.b[p.i] != '{' {
		return fail("not a JSON object")
	}
	p.i++
	seen := 0
	p.ws()
	if p.peek() == '}' {
		p.i++
	} else {
		for k := 0; ; k++ {
			p.ws()
			var name []byte
			var err error
			bit := 0
			// Fast path: the k-th field is the k-th of the usual order,
			// written "name": — exactly what the general path below would
			// find, without scanning the name (calls are dear in a
			// WebAssembly guest).
			if k < len(usualNames) && len(p.b)-p.i >= len(usualNames[k]) && string(p.b[p.i:p.i+len(usualNames[k])]) == usualNames[k] {
				name = p.b[p.i+1 : p.i+len(usualNames[k])-2]
				p.i += len(usualNames[k])
				bit = 1 << k
			} else {
				if name, err = p.str(); err != nil {
					return err
				}
				p.ws()
				if p.peek() != ':' {
					return fail("expected ':' after a field name")
				}
				p.i++
				for k, n := range fieldNames {
					if string(name) == n {
						bit = 1 << k
						break
					}
				}
			}
			p.ws()
			if bit != 0 && seen&bit != 0 {
				return fail("duplicate field " + string(name))
			}
			seen |= bit
			switch bit {
			case fTS:
				if f.TS, err = p.strField("ts"); err != nil {
					return err
				}
				if f.TimeMs, err = parseTS(f.TS); err != nil {
					return err
				}
			case fOrderID:
				f.OrderID, err = p.strField("order_id")
			case fSKU:
				f.SKU, err = p.strField("sku")
			case fCategory:
				f.Category, err = p.strField("category")
			case fCity:
				f.City, err = p.strField("city")
			case fStatus:
				f.Status, err = p.strField("status")
			case fUserID:
				f.UserID, err = p.intField("user_id", 0, maxUserID)
			case fQty:
				f.Qty, err = p.intField("qty", 1, maxQty)
			case fPrice:
				f.PriceCents, err = p.price()
			default:
				err = p.skip(0)
			}
			if err != nil {
				return err
			}
			p.ws()
			c := p.peek()
			p.i++
			if c == '}' {
				break
			}
			if c != ',' {
				if c == 0 {
					return fail("truncated")
				}
				return fail("expected ',' or '}' after field " + string(name))
			}
		}
	}
	p.ws()
	if p.i != len(p.b) {
		return fail("trailing bytes after the object")
	}
	if seen != fAll {
		for k, n := range fieldNames {
			if seen&(1<<k) == 0 {
				return fail("missing field " + n)
			}
		}
	}
	return nil
}

type parser struct {
	b []byte
	i int
}

// peek returns the current byte, or 0 at the end (0 never starts valid JSON).
func (p *parser) peek() byte {
	if p.i < len(p.b) {
		return p.b[p.i]
	}
	return 0
}

func (p *parser) ws() {
	for p.i < len(p.b) {
		switch p.b[p.i] {
		case ' ', '\t', '\n', '\r':
			p.i++
		default:
			return
		}
	}
}

// str reads a JSON string and returns its contents as written.
func (p *parser) str() ([]byte, error) {
	if p.peek() != '"' {
		if p.i >= len(p.b) {
			return nil, fail("truncated")
		}
		return nil, fail("expected a string")
	}
	p.i++
	start := p.i
	for p.i < len(p.b) {
		// Jump 8 bytes at a time to the next '"', '\\' or control byte:
		// fewer loop iterations matter most in a WebAssembly guest.
		for p.i+8 <= len(p.b) {
			if m := specialMask(binary.LittleEndian.Uint64(p.b[p.i:])); m != 0 {
				p.i += bits.TrailingZeros64(m) >> 3
				break
			}
			p.i += 8
		}
		if p.i >= len(p.b) {
			break
		}
		c := p.b[p.i]
		switch {
		case c == '"':
			s := p.b[start:p.i]
			p.i++
			return s, nil
		case c < 0x20:
			return nil, fail("control character in a string")
		case c == '\\':
			if p.i+1 >= len(p.b) {
				return nil, fail("truncated")
			}
			switch p.b[p.i+1] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				p.i += 2
			case 'u':
				if p.i+6 > len(p.b) {
					return nil, fail("truncated")
				}
				for _, h := range p.b[p.i+2 : p.i+6] {
					if !isHex(h) {
						return nil, fail("invalid escape in a string")
					}
				}
				p.i += 6
			default:
				return nil, fail("invalid escape in a string")
			}
		default:
			p.i++
		}
	}
	return nil, fail("truncated")
}

// specialMask flags, in bit 7 of each byte, the bytes of w that are '"',
// '\\' or below 0x20. Only the lowest flag is exact (a borrow can flag a byte
// above a real one), which is all str needs.
func specialMask(w uint64) uint64 {
	const ones, highs = 0x0101010101010101, 0x8080808080808080
	q, bs := w^(ones*'"'), w^(ones*'\\')
	return ((q-ones)&^q | (bs-ones)&^bs | (w-ones*0x20)&^w) & highs
}

func isHex(c byte) bool {
	return c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F'
}

func (p *parser) strField(name string) ([]byte, error) {
	if p.peek() != '"' {
		if p.i >= len(p.b) {
			return nil, fail("truncated")
		}
		return nil, fail("field " + name + " is not a string")
	}
	s, err := p.str()
	if err != nil {
		return nil, err
	}
	if len(s) == 0 {
		return nil, fail("field " + name + " is empty")
	}
	return s, nil
}

// intField reads a non-negative JSON integer within [lo, hi].
func (p *parser) intField(name string, lo, hi int64) (int64, error) {
	start := p.i
	var v int64
	for p.i < len(p.b) && p.b[p.i] >= '0' && p.b[p.i] <= '9' {
		if v > hi {
			return 0, fail("field " + name + " is out of range")
		}
		v = v*10 + int64(p.b[p.i]-'0')
		p.i++
	}
	if p.i == start || !p.numberEnds() {
		if p.i >= len(p.b) {
			return 0, fail("truncated")
		}
		return 0, fail("field " + name + " is not an integer")
	}
	if v < lo || v > hi {
		return 0, fail("field " + name + " is out of range")
	}
	return v, nil
}

// numberEnds reports whether the byte after a number is one that may follow
// a value (so 12x, 1.5 or 1e3 where an integer is wanted are refused).
func (p *parser) numberEnds() bool {
	switch p.peek() {
	case ',', '}', ' ', '\t', '\n', '\r':
		return true
	}
	return false
}

// price reads a non-negative decimal with at most two fractional digits, as a
// JSON number or a JSON string, and returns it in cents.
func (p *parser) price() (int64, error) {
	quoted := p.peek() == '"'
	if quoted {
		p.i++
	}
	var units, cents int64
	start := p.i
	for p.i < len(p.b) && p.b[p.i] >= '0' && p.b[p.i] <= '9' {
		units = units*10 + int64(p.b[p.i]-'0')
		if units >= maxPriceUnits {
			return 0, fail("field price is out of range")
		}
		p.i++
	}
	if p.i == start {
		if p.i >= len(p.b) {
			return 0, fail("truncated")
		}
		return 0, fail("field price is not a non-negative decimal")
	}
	if p.peek() == '.' {
		p.i++
		digits := 0
		for p.i < len(p.b) && p.b[p.i] >= '0' && p.b[p.i] <= '9' {
			digits++
			if digits > 2 {
				return 0, fail("field price has more than two decimals")
			}
			cents = cents*10 + int64(p.b[p.i]-'0')
			p.i++
		}
		if digits == 0 {
			return 0, fail("field price is not a non-negative decimal")
		}
		if digits == 1 {
			cents *= 10
		}
	}
	if quoted {
		if p.peek() != '"' {
			return 0, fail("field price is not a non-negative decimal")
		}
		p.i++
	} else if !p.numberEnds() {
		if p.i >= len(p.b) {
			return 0, fail("truncated")
		}
		return 0, fail("field price is not a non-negative decimal")
	}
	return units*100 + cents, nil
}

// skip skips one JSON value of an unknown field, checking only what it must
// to find the value's end.
func (p *parser) skip(depth int) error {
	if depth > 32 {
		return fail("value nested too deeply")
	}
	switch c := p.peek(); {
	case c == 0:
		return fail("truncated")
	case c == '"':
		_, err := p.str()
		return err
	case c == '{' || c == '[':
		close := byte('}')
		if c == '[' {
			close = ']'
		}
		p.i++
		p.ws()
		if p.peek() == close {
			p.i++
			return nil
		}
		for {
			p.ws()
			if c == '{' {
				if _, err := p.str(); err != nil {
					return err
				}
				p.ws()
				if p.peek() != ':' {
					return fail("expected ':' after a field name")
				}
				p.i++
				p.ws()
			}
			if err := p.skip(depth + 1); err != nil {
				return err
			}
			p.ws()
			d := p.peek()
			p.i++
			if d == close {
				return nil
			}
			if d != ',' {
				if d == 0 {
					return fail("truncated")
				}
				return fail("invalid value of an unknown field")
			}
		}
	default:
		start := p.i
		for p.i < len(p.b) {
			d := p.b[p.i]
			if d >= '0' && d <= '9' || d >= 'a' && d <= 'z' || d == '-' || d == '+' || d == '.' || d == 'E' {
				p.i++
				continue
			}
			break
		}
		if p.i == start {
			return fail("invalid value of an unknown field")
		}
		return nil
	}
}

var errTS = errors.New("field ts is not a UTC time like 2026-11-25T12:00:00.123Z")

// parseTS accepts YYYY-MM-DDTHH:MM:SS[.fraction]Z with a year from 1970 to
// 9999 and returns unix milliseconds (fraction digits past the third are
// ignored).
func parseTS(s []byte) (int64, error) {
	if ms, ok := parseTSOK(s); ok {
		return ms, nil
	}
	return 0, errBadTS
}

// errBadTS is allocated once: parseTS runs for every order.
var errBadTS error = &ParseError{Reason: errTS.Error()}

func parseTSOK(s []byte) (int64, bool) {
	const bad = false
	if len(s) < 20 || s[4] != '-' || s[7] != '-' || s[10] != 'T' || s[13] != ':' || s[16] != ':' || s[len(s)-1] != 'Z' {
		return 0, bad
	}
	y, mo, d := digits(s, 0, 4), digits(s, 5, 7), digits(s, 8, 10)
	h, mi, sec := digits(s, 11, 13), digits(s, 14, 16), digits(s, 17, 19)
	if y < 1970 || mo < 1 || mo > 12 || d < 1 || d > daysIn(y, mo) || h < 0 || h > 23 || mi < 0 || mi > 59 || sec < 0 || sec > 59 {
		return 0, bad
	}
	var ms int64
	rest := s[19 : len(s)-1]
	if len(rest) > 0 {
		if rest[0] != '.' || len(rest) == 1 {
			return 0, bad
		}
		for k, c := range rest[1:] {
			if c < '0' || c > '9' {
				return 0, bad
			}
			if k < 3 {
				ms = ms*10 + int64(c-'0')
			}
		}
		for k := len(rest) - 1; k < 3; k++ {
			ms *= 10
		}
	}
	days := daysFromCivil(y, mo, d)
	return ((days*24+h)*60+mi)*60000 + sec*1000 + ms, true
}

// digits is the decimal number s[from:to], or -1 if it holds a non-digit.
func digits(s []byte, from, to int) int64 {
	var v int64
	for _, c := range s[from:to] {
		if c < '0' || c > '9' {
			return -1
		}
		v = v*10 + int64(c-'0')
	}
	return v
}

func daysIn(y, m int64) int64 {
	switch m {
	case 2:
		if y%4 == 0 && (y%100 != 0 || y%400 == 0) {
			return 29
		}
		return 28
	case 4, 6, 9, 11:
		return 30
	}
	return 31
}

// daysFromCivil is Howard Hinnant's algorithm: days since 1970-01-01.
func daysFromCivil(y, m, d int64) int64 {
	if m <= 2 {
		y--
	}
	era := y / 400
	yoe := y - era*400
	mp := (m + 9) % 12
	doy := (153*mp+2)/5 + d - 1
	doe := yoe*365 + yoe/4 - yoe/100 + doy
	return era*146097 + doe - 719468
}

// civilFromDays is the inverse of daysFromCivil.
func civilFromDays(z int64) (y, m, d int64) {
	z += 719468
	era := z / 146097
	doe := z - era*146097
	yoe := (doe - doe/1460 + doe/36524 - doe/146096) / 365
	y = yoe + era*400
	doy := doe - (365*yoe + yoe/4 - yoe/100)
	mp := (5*doy + 2) / 153
	d = doy - (153*mp+2)/5 + 1
	if mp < 10 {
		m = mp + 3
	} else {
		m = mp - 9
	}
	if m <= 2 {
		y++
	}
	return y, m, d
}

// AppendMinute appends the minute window of unix milliseconds ms in the form
// 2026-11-25T12:00 (ms must be at or after 1970).
func AppendMinute(dst []byte, ms int64) []byte {
	mins := ms / 60000
	y, mo, d := civilFromDays(mins / 1440)
	hm := mins % 1440
	dst = appendPad(dst, y, 4)
	dst = append(dst, '-')
	dst = appendPad(dst, mo, 2)
	dst = append(dst, '-')
	dst = appendPad(dst, d, 2)
	dst = append(dst, 'T')
	dst = appendPad(dst, hm/60, 2)
	dst = append(dst, ':')
	return appendPad(dst, hm%60, 2)
}

func appendPad(dst []byte, v int64, width int) []byte {
	var tmp [20]byte
	s := strconv.AppendInt(tmp[:0], v, 10)
	for i := len(s); i < width; i++ {
		dst = append(dst, '0')
	}
	return append(dst, s...)
}

// AppendCanonical appends the normalised form of an order that order-parse
// emits: the nine known fields in a fixed order, no whitespace, ts with
// exactly three fractional digits, price as a number with two decimals.
func AppendCanonical(dst []byte, f *Fields) []byte {
	dst = append(dst, `{"ts":"`...)
	dst = append(dst, f.TS[:19]...)
	dst = append(dst, '.')
	dst = appendPad(dst, f.TimeMs%1000, 3)
	dst = append(dst, `Z","order_id":"`...)
	dst = append(dst, f.OrderID...)
	dst = append(dst, `","user_id":`...)
	dst = strconv.AppendInt(dst, f.UserID, 10)
	dst = append(dst, `,"sku":"`...)
	dst = append(dst, f.SKU...)
	dst = append(dst, `","category":"`...)
	dst = append(dst, f.Category...)
	dst = append(dst, `","qty":`...)
	dst = strconv.AppendInt(dst, f.Qty, 10)
	dst = append(dst, `,"price":`...)
	dst = appendCents(dst, f.PriceCents)
	dst = append(dst, `,"city":"`...)
	dst = append(dst, f.City...)
	dst = append(dst, `","status":"`...)
	dst = append(dst, f.Status...)
	return append(dst, `"}`...)
}

func appendCents(dst []byte, cents int64) []byte {
	dst = strconv.AppendInt(dst, cents/100, 10)
	dst = append(dst, '.')
	return appendPad(dst, cents%100, 2)
}
