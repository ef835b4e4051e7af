package event

import (
	"bytes"
	"errors"
	"reflect"
	"testing"
)

func sample() []Event {
	return []Event{
		{Time: 1, Body: []byte(`{"order_id":"o-1"}`)},
		{Time: -5, Key: []byte("books"), Body: []byte("x"), Headers: []Header{{"a", "1"}, {"b", ""}}},
		{},
	}
}

func TestRoundTrip(t *testing.T) {
	for _, evs := range [][]Event{nil, sample()} {
		enc := AppendBatch(nil, evs)
		got, err := DecodeBatch(nil, enc)
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != len(evs) {
			t.Fatalf("got %d events, want %d", len(got), len(evs))
		}
		for i := range evs {
			want := evs[i]
			if len(want.Body) == 0 {
				want.Body = []byte{}
			}
			g := got[i]
			if g.Time != want.Time || !bytes.Equal(g.Key, want.Key) || !bytes.Equal(g.Body, want.Body) ||
				(len(g.Headers) != 0 || len(want.Headers) != 0) && !reflect.DeepEqual(g.Headers, want.Headers) {
				t.Errorf("event %d: got %+v want %+v", i, g, want)
			}
			if g.EncodedSize() != want.EncodedSize() {
				t.Errorf("event %d: size %d want %d", i, g.EncodedSize(), want.EncodedSize())
			}
		}
	}
}

func TestBuilderMatchesAppendBatch(t *testing.T) {
	var b Builder
	if got := b.Bytes(); !bytes.Equal(got, AppendBatch(nil, nil)) {
		t.Fatalf("empty builder: %x", got)
	}
	evs := sample()
	for i := range evs {
		b.Add(&evs[i])
	}
	if !bytes.Equal(b.Bytes(), AppendBatch(nil, evs)) || b.Len() != 3 || b.Size() != len(b.Bytes()) {
		t.Fatal("builder differs from AppendBatch")
	}
	b.Reset()
	if b.Len() != 0 || len(b.Bytes()) != 4 {
		t.Fatal("reset did not empty the builder")
	}
}

func TestIterate(t *testing.T) {
	enc := AppendBatch(nil, sample())
	var keys []string
	err := Iterate(enc, func(i int, e *Event) error {
		keys = append(keys, string(e.Key))
		return nil
	})
	if err != nil || !reflect.DeepEqual(keys, []string{"", "books", ""}) {
		t.Fatalf("keys %q err %v", keys, err)
	}
	stop := errors.New("stop")
	if err := Iterate(enc, func(int, *Event) error { return stop }); err != stop {
		t.Fatalf("want stop, got %v", err)
	}
}

func TestMalformed(t *testing.T) {
	good := AppendBatch(nil, sample())
	cases := map[string][]byte{
		"empty":          {},
		"short count":    {1, 0},
		"huge count":     {0xff, 0xff, 0xff, 0xff},
		"truncated":      good[:len(good)-1],
		"trailing":       append(append([]byte{}, good...), 0),
		"key past end":   {1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0},
		"headers absurd": {1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff},
	}
	for name, in := range cases {
		if _, err := DecodeBatch(nil, in); !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: want ErrMalformed, got %v", name, err)
		}
		if err := Iterate(in, func(int, *Event) error { return nil }); !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: Iterate: want ErrMalformed, got %v", name, err)
		}
	}
}

func TestHeaders(t *testing.T) {
	var e Event
	e.SetHeader("a", "1")
	e.SetHeader("a", "2")
	if v, ok := e.Header("a"); !ok || v != "2" || len(e.Headers) != 1 {
		t.Fatalf("%+v", e)
	}
	if _, ok := e.Header("b"); ok {
		t.Fatal("found missing header")
	}
}

func FuzzDecodeBatch(f *testing.F) {
	f.Add(AppendBatch(nil, sample()))
	f.Add([]byte{})
	f.Add([]byte{1, 0, 0, 0})
	f.Fuzz(func(t *testing.T, in []byte) {
		evs, err := DecodeBatch(nil, in)
		if err != nil {
			return
		}
		// Whatever decodes must encode back to the same bytes.
		if out := AppendBatch(nil, evs); !bytes.Equal(out, in) {
			t.Fatalf("re-encoding differs:\n in %x\nout %x", in, out)
		}
	})
}

func TestAddEncoded(t *testing.T) {
	evs := sample()
	var b Builder
	b.Add(&evs[0])
	if err := b.AddEncoded(AppendBatch(nil, evs[1:])); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(b.Bytes(), AppendBatch(nil, evs)) || b.Len() != 3 {
		t.Fatal("AddEncoded differs from AppendBatch")
	}
	good := AppendBatch(nil, evs)
	for _, bad := range [][]byte{good[:len(good)-1], append(append([]byte{}, good...), 0), {9, 0, 0, 0}} {
		before := b.Size()
		if err := b.AddEncoded(bad); !errors.Is(err, ErrMalformed) || b.Size() != before {
			t.Errorf("malformed %x: err %v, size %d→%d", bad, err, before, b.Size())
		}
	}
}

func FuzzAddEncoded(f *testing.F) {
	f.Add(AppendBatch(nil, sample()))
	f.Add([]byte{0, 0, 0, 0})
	f.Fuzz(func(t *testing.T, in []byte) {
		var b Builder
		errAdd := b.AddEncoded(in)
		_, errDec := DecodeBatch(nil, in)
		if (errAdd == nil) != (errDec == nil) {
			t.Fatalf("AddEncoded err %v, DecodeBatch err %v", errAdd, errDec)
		}
		if errAdd == nil && !bytes.Equal(b.Bytes(), in) {
			t.Fatal("AddEncoded into an empty builder changed the bytes")
		}
	})
}
