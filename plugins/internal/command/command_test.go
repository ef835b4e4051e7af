package command

import (
	"fmt"
	"strconv"
	"strings"
	"testing"
)

func TestParse(t *testing.T) {
	good := []struct {
		in   string
		want Command
	}{
		{`{"op":"hincrby","key":"k","field":"f","value":25}`, Command{Op: "hincrby", Key: "k", Field: "f", Int: 25}},
		{`{"op":"hincrbyfloat","key":"k","field":"f","value":1.5}`, Command{Op: "hincrbyfloat", Key: "k", Field: "f", Float: 1.5, Raw: "1.5"}},
		{`{"op":"zincrby","key":"k","member":"m","value":-2}`, Command{Op: "zincrby", Key: "k", Field: "m", Float: -2, Raw: "-2"}},
		{`{"op":"set","key":"k","value":"v","ttl_ms":100}`, Command{Op: "set", Key: "k", Str: "v", TTLms: 100, HasTTL: true}},
		{`{"op":"expire","key":"k","ttl_ms":5}`, Command{Op: "expire", Key: "k", TTLms: 5, HasTTL: true}},
		{`{"op":"publish","channel":"c","message":"m"}`, Command{Op: "publish", Key: "c", Str: "m"}},
	}
	for _, g := range good {
		c, err := Parse([]byte(g.in))
		if err != nil {
			t.Errorf("%s: %v", g.in, err)
			continue
		}
		if c.Op != g.want.Op || c.Key != g.want.Key || c.Field != g.want.Field || c.Int != g.want.Int ||
			c.Float != g.want.Float || c.Str != g.want.Str || c.TTLms != g.want.TTLms || c.Raw != g.want.Raw {
			t.Errorf("%s: got %+v, want %+v", g.in, c, g.want)
		}
	}
	c, err := Parse([]byte(`{"op":"xadd","key":"s","fields":{"a":"1"}}`))
	if err != nil || c.Fields["a"] != "1" {
		t.Fatalf("xadd: %+v %v", c, err)
	}
	bad := []struct{ in, want string }{
		{`nope`, "not a command record"},
		{`{"op":"hincrby","key":"k","field":"f","value":1.5}`, "not an integer"},
		{`{"op":"hincrby","key":"k","value":1}`, `missing ["field"]`},
		{`{"op":"frob","key":"k"}`, `unknown op "frob"`},
		{`{"op":"set","key":"k","value":"v","member":"m"}`, `field "member" does not belong`},
		{`{"op":"set","key":"k","value":"v","ttl_ms":0}`, "must be positive"},
		{`{"op":"xadd","key":"k","fields":{}}`, "fields is empty"},
		{`{"op":"hset","key":"","field":"f","value":"v"}`, "key is empty"},
		{`{"key":"k"}`, `missing "op"`},
		{`{"op":"set","key":"k","value":"v"} {}`, "data after"},
		{`{"op":"set","key":"k","value":"v","extra":1}`, "unknown field"},
	}
	for _, b := range bad {
		_, err := Parse([]byte(b.in))
		if err == nil || !strings.Contains(err.Error(), b.want) {
			t.Errorf("%s: error %v, want it to contain %q", b.in, err, b.want)
		}
	}
}

func FuzzParse(f *testing.F) {
	for _, s := range []string{
		`{"op":"hincrby","key":"k","field":"f","value":25}`,
		`{"op":"xadd","key":"s","fields":{"a":"1"}}`,
		`{"op":"set","key":"k","value":"v","ttl_ms":100}`,
		`{"op":"publish","channel":"c","message":"m"}`,
		`{"op":"zincrby","key":"k","member":"m","value":1e3}`,
		`{`, ``,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := Parse(b)
		if err != nil {
			return
		}
		if c.Op != "publish" && (c.Key == "" || len(c.Key) > MaxName) {
			t.Fatalf("accepted a bad key: %+v", c)
		}
		if (c.Op == "hincrbyfloat" || c.Op == "zincrby") && c.Raw == "" {
			t.Fatalf("number without its text: %+v", c)
		}
	})
}

// FuzzFastAgreesWithJSON checks that the fast decoder, whenever it accepts
// a record, reads it exactly as encoding/json does.
func FuzzFastAgreesWithJSON(f *testing.F) {
	for _, s := range []string{
		`{"op":"hincrby","key":"k","field":"f","value":25}`,
		` { "op" : "set" , "key":"k","value":"v","ttl_ms":1e2 } `,
		`{"op":"set","key":"k","value":"v","key":"x"}`,
		`{"op":"zincrby","key":"k","member":"m","value":-0.5E+3}`,
		`{"op":"publish","channel":"c","message":"\u00e9"}`,
		`{"op":"set","key":"k","value":"v"}x`,
		`{"op":"hset","key":"k","field":"f","value":"é"}`,
		"{\"op\":\"hset\",\"key\":\"k\xff\",\"field\":\"f\",\"value\":\"v\"}",
		"{\"op\":\"hset\",\"key\":\"k\",\"field\":\"f\tg\",\"value\":\"v\"}",
		`{"op":"hincrby","key":"k","field":"f","value":-9223372036854775808}`,
		`{"op":"hincrby","key":"k","field":"f","value":9223372036854775808}`,
		`{"op":"hincrby","key":"k","field":"f","value":-123456789012345678}`,
		`{"op":"expire","key":"k","ttl_ms":-0}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		var fast record
		if !fastDecode(b, &fast, false) {
			return
		}
		var slow record
		if err := slowDecode(b, &slow); err != nil {
			t.Fatalf("fast accepted what encoding/json refuses (%v): %q", err, b)
		}
		fc, ferr := check(&fast)
		sc, serr := check(&slow)
		if (ferr == nil) != (serr == nil) || (ferr != nil && ferr.Error() != serr.Error()) {
			t.Fatalf("%q: fast error %v, json error %v", b, ferr, serr)
		}
		if fmt.Sprint(fc) != fmt.Sprint(sc) {
			t.Fatalf("%q: fast %+v, json %+v", b, fc, sc)
		}
	})
}

func BenchmarkParse(b *testing.B) {
	body := []byte(`{"op":"hincrby","key":"rev:cat:2026-11-25T12:00","field":"books","value":2500}`)
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		if _, err := Parse(body); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkParseAliased(b *testing.B) {
	body := []byte(`{"op":"hincrby","key":"rev:cat:2026-11-25T12:00","field":"books","value":2500}`)
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		if _, err := ParseAliased(body); err != nil {
			b.Fatal(err)
		}
	}
}

func TestParseAliasedEqualsParse(t *testing.T) {
	for _, s := range []string{`{"op":"hset","key":"k","field":"f","value":"v"}`, `{"op":"xadd","key":"s","fields":{"a":"1"}}`, `nope`} {
		a, errA := Parse([]byte(s))
		b, errB := ParseAliased([]byte(s))
		if fmt.Sprint(a, errA) != fmt.Sprint(b, errB) {
			t.Errorf("%s: Parse %v %v, ParseAliased %v %v", s, a, errA, b, errB)
		}
	}
}

// parseInt's short cut must agree with strconv.ParseInt, which it stands
// in for, on the edges of the short cut and of int64.
func TestParseIntAgreesWithStrconv(t *testing.T) {
	for _, s := range []string{"0", "-0", "7", "-7", "007", "+5", "", "-", "--1", "1a", "1.5", "1e3",
		"123456789012345678", "-123456789012345678", "1234567890123456789",
		"9223372036854775807", "-9223372036854775808", "9223372036854775808", "-9223372036854775809"} {
		got, gerr := parseInt([]byte(s))
		want, werr := strconv.ParseInt(s, 10, 64)
		if got != want || (gerr == nil) != (werr == nil) {
			t.Errorf("parseInt(%q) = %d, %v; strconv: %d, %v", s, got, gerr, want, werr)
		}
	}
}
