package wal

import (
	"bytes"
	"errors"
	"testing"
)

func sampleData(off uint64) *Data {
	return &Data{Offset: off, EventsBefore: 10, BytesBefore: 300, Count: 2,
		Producer: []byte("tail:orders"), InputPos: []byte("fp:1234@99"), Batch: []byte("batch-bytes")}
}

func sampleSegment(base uint64) []byte {
	return AppendSegment(nil, &Segment{Base: base, Version: Version, Partition: 3, EventsBefore: 7, BytesBefore: 70,
		Producers: []ProducerPos{{"a", []byte("1")}, {"b", nil}}})
}

func TestFrameRoundTrip(t *testing.T) {
	d := sampleData(42)
	b := AppendData(nil, d)
	if len(b) != DataSize(string(d.Producer), d.InputPos, d.Batch) {
		t.Fatalf("DataSize %d, encoded %d", DataSize(string(d.Producer), d.InputPos, d.Batch), len(b))
	}
	f, err := Decode(b)
	if err != nil || f.Kind != KindData || f.Offset != 42 || f.Size != len(b) {
		t.Fatalf("Decode = %+v, %v", f, err)
	}
	got, err := DecodeData(f)
	if err != nil || got.EventsBefore != 10 || got.BytesBefore != 300 || got.Count != 2 ||
		string(got.Producer) != "tail:orders" || string(got.InputPos) != "fp:1234@99" || string(got.Batch) != "batch-bytes" {
		t.Fatalf("DecodeData = %+v, %v", got, err)
	}
	sf, err := Decode(sampleSegment(5))
	if err != nil {
		t.Fatal(err)
	}
	s, err := DecodeSegment(sf)
	if err != nil || s.Base != 5 || s.Partition != 3 || len(s.Producers) != 2 || string(s.Producers[0].Pos) != "1" {
		t.Fatalf("DecodeSegment = %+v, %v", s, err)
	}
	m, err := Decode(AppendMarker(nil, KindSync, 9))
	if err != nil || m.Kind != KindSync || m.Offset != 9 || m.Size != MarkerSize {
		t.Fatalf("marker = %+v, %v", m, err)
	}
}

func TestFrameDamage(t *testing.T) {
	b := AppendData(nil, sampleData(1))
	for i := range b {
		for _, cut := range []bool{false, true} {
			c := bytes.Clone(b)
			if cut {
				c = c[:i]
			} else {
				c[i] ^= 0x40
			}
			if _, err := Decode(c); !errors.Is(err, ErrBadFrame) {
				t.Fatalf("byte %d (cut=%v): damage not detected: %v", i, cut, err)
			}
		}
	}
}

func TestScan(t *testing.T) {
	img := sampleSegment(5)
	var ends []int
	for off := uint64(5); off < 10; off++ {
		img = AppendData(img, sampleData(off))
		img = AppendMarker(img, KindSync, off+1)
		ends = append(ends, len(img))
	}
	res, err := Scan(img)
	if err != nil || len(res.Records) != 5 || res.Next != 10 || res.End != len(img) || res.TornAt != -1 {
		t.Fatalf("clean scan: %+v %v", res, err)
	}
	// A zero-filled preallocated tail is a clean end.
	res, _ = Scan(append(bytes.Clone(img), make([]byte, 4096)...))
	if res.Next != 10 || res.TornAt != -1 {
		t.Fatalf("preallocated tail: next %d torn %d", res.Next, res.TornAt)
	}
	// Damage in the middle, followed by later groups: skipped and reported.
	bad := bytes.Clone(img)
	bad[ends[1]+HeaderSize+20] ^= 1
	res, _ = Scan(bad)
	if len(res.Records) != 4 || len(res.Skipped) != 1 || res.Skipped[0].Lost != 1 || res.Next != 10 {
		t.Fatalf("mid damage: %d records, skipped %+v, next %d", len(res.Records), res.Skipped, res.Next)
	}
	// Damage in the last group: a torn tail, cut off there.
	bad = bytes.Clone(img)
	bad[ends[3]+HeaderSize+20] ^= 1
	res, _ = Scan(bad)
	if len(res.Records) != 4 || len(res.Skipped) != 0 || res.Next != 9 || res.TornAt != ends[3] || res.DirtyEnd != len(img) {
		t.Fatalf("torn last group: %+v", res)
	}
	// A sealed segment stops at the seal; stale frames after it are ignored.
	sealed := AppendMarker(bytes.Clone(img), KindSeal, 10)
	sealed = AppendData(sealed, sampleData(3))
	res, _ = Scan(sealed)
	if !res.Sealed || res.Next != 10 {
		t.Fatalf("sealed: %+v", res)
	}
	// Stale frames (older offsets) after the end are not a continuation.
	stale := AppendData(bytes.Clone(img), sampleData(2))
	res, _ = Scan(stale)
	if res.Next != 10 || res.TornAt != -1 || res.End != len(img) {
		t.Fatalf("stale tail: %+v", res)
	}
	if _, err := Scan([]byte("nonsense")); err == nil {
		t.Fatal("a segment without a header scanned")
	}
}

func TestMeta(t *testing.T) {
	m, err := DecodeMeta(EncodeMeta(Meta{Version: MetaVersion, Partitions: 4}))
	if err != nil || m.Partitions != 4 {
		t.Fatalf("%+v %v", m, err)
	}
	for in, want := range map[string]error{
		"": ErrBadMeta,
		"sluice-channel\nversion 2\npartitions 1\n": ErrUnknownVersion,
		"sluice-channel\npartitions 1\n":            ErrBadMeta,
		"sluice-channel\nversion 1\npartitions 0\n": ErrBadMeta,
		"sluice-channel\nversion 1\nversion 1\n":    ErrBadMeta,
		"something else\n":                          ErrBadMeta,
	} {
		if _, err := DecodeMeta([]byte(in)); !errors.Is(err, want) {
			t.Errorf("DecodeMeta(%q) = %v, want %v", in, err, want)
		}
	}
}

func TestPosition(t *testing.T) {
	p := Position{Name: "sink", Offset: 9, EventsThrough: 90, BytesThrough: 900}
	b := EncodePosition(p)
	got, err := DecodePosition(b)
	if err != nil || got != p {
		t.Fatalf("%+v %v", got, err)
	}
	for i := range b {
		c := bytes.Clone(b)
		c[i] ^= 2
		if _, err := DecodePosition(c); !errors.Is(err, ErrBadPosition) {
			t.Fatalf("flip at %d not detected", i)
		}
	}
}

func FuzzDecode(f *testing.F) {
	f.Add(AppendData(nil, sampleData(1)))
	f.Add(sampleSegment(1))
	f.Add(AppendMarker(nil, KindSeal, 3))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		fr, err := Decode(b)
		if err != nil {
			return
		}
		if fr.Size > len(b) {
			t.Fatalf("frame size %d beyond input %d", fr.Size, len(b))
		}
		if d, err := DecodeData(fr); err == nil {
			if len(d.Producer)+len(d.InputPos)+len(d.Batch) > len(b) {
				t.Fatal("decoded fields larger than input")
			}
			if again, _ := Decode(AppendData(nil, &d)); !bytes.Equal(again.Body, fr.Body) {
				t.Fatal("data frame does not re-encode to the same bytes")
			}
		}
		DecodeSegment(fr)
	})
}

func FuzzScan(f *testing.F) {
	img := sampleSegment(5)
	img = AppendData(img, sampleData(5))
	img = AppendMarker(img, KindSync, 6)
	f.Add(img)
	f.Add(append(bytes.Clone(img), 0, 0, 0))
	f.Add(sampleSegment(1))
	f.Fuzz(func(t *testing.T, b []byte) {
		res, err := Scan(b)
		if err != nil {
			return
		}
		if res.End > len(b) || res.DirtyEnd > len(b) || res.End > res.DirtyEnd {
			t.Fatalf("positions out of range: %+v (len %d)", res, len(b))
		}
		for i, r := range res.Records {
			if r.Offset < res.Header.Base || (i > 0 && r.Offset <= res.Records[i-1].Offset) || r.Offset >= res.Next {
				t.Fatalf("record offsets not increasing within [base, next): %d", r.Offset)
			}
		}
	})
}

func FuzzDecodeMeta(f *testing.F) {
	f.Add(EncodeMeta(Meta{Version: 1, Partitions: 2}))
	f.Add([]byte("sluice-channel\nversion 7\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := DecodeMeta(b)
		if err == nil {
			if again, err := DecodeMeta(EncodeMeta(m)); err != nil || again != m {
				t.Fatalf("%+v does not round-trip: %v", m, err)
			}
		}
	})
}

func FuzzDecodePosition(f *testing.F) {
	f.Add(EncodePosition(Position{Name: "r", Offset: 1}))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		p, err := DecodePosition(b)
		if err == nil && !bytes.Equal(EncodePosition(p), b) {
			t.Fatal("position does not re-encode to the same bytes")
		}
	})
}
