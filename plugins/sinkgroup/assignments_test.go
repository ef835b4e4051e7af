package sinkgroup

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// A slot torn by a crash (its batch was never sent) is skipped and counted;
// the records around it survive; the next record continues the sequence.
func TestAssignLogSkipsTornSlotAndContinues(t *testing.T) {
	dir := t.TempDir()
	l, damaged, err := openAssignLog(dir, "c/0/out")
	if err != nil || damaged != 0 {
		t.Fatal(damaged, err)
	}
	for off := uint64(10); off <= 12; off++ {
		if err := l.record(off, memberID("a")); err != nil {
			t.Fatal(err)
		}
	}
	if err := l.record(11, memberID("b")); err != nil { // 11 moved to b
		t.Fatal(err)
	}
	l.close()
	// Tear the record of 12 (seq 3).
	f, err := os.OpenFile(l.path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteAt([]byte{0xff}, 3*slotSize+9)
	f.Close()

	l, damaged, err = openAssignLog(dir, "c/0/out")
	if err != nil {
		t.Fatal(err)
	}
	defer l.close()
	if damaged != 1 {
		t.Errorf("damaged = %d, want 1", damaged)
	}
	if m, ok, _ := l.replayed(10); !ok || m != memberID("a") {
		t.Errorf("10: %v %v, want a", m, ok)
	}
	if m, ok, _ := l.replayed(11); !ok || m != memberID("b") {
		t.Errorf("11: the latest record (b) must win, got %v %v", m, ok)
	}
	if _, ok, _ := l.replayed(12); ok {
		t.Errorf("12: its slot is torn, want unknown")
	}
	if l.nextSeq != 5 {
		t.Errorf("nextSeq = %d, want 5", l.nextSeq)
	}
	if _, ok, _ := l.replayed(13); ok || l.replay != nil {
		t.Errorf("past the replay the map must be dropped")
	}
}

func TestAssignLogWrongSizeIsAnErrorNamingTheFile(t *testing.T) {
	dir := t.TempDir()
	l, _, err := openAssignLog(dir, "s")
	if err != nil {
		t.Fatal(err)
	}
	l.close()
	if err := os.Truncate(l.path, 100); err != nil {
		t.Fatal(err)
	}
	_, _, err = openAssignLog(dir, "s")
	if err == nil || !filepath.IsAbs(l.path) || !contains(err.Error(), l.path) || !contains(err.Error(), "100 bytes") {
		t.Fatalf("want an error naming %s and its size, got %v", l.path, err)
	}
}

func contains(s, sub string) bool { return strings.Contains(s, sub) }

func FuzzDecodeSlots(f *testing.F) {
	good := make([]byte, assignSlots*slotSize)
	encodeSlot(good[1*slotSize:], slot{seq: 1, offset: 7, member: 42})
	f.Add(good)
	f.Add([]byte{})
	f.Add(make([]byte, assignSlots*slotSize))
	f.Fuzz(func(t *testing.T, b []byte) {
		slots, damaged, err := decodeSlots(b)
		if err != nil {
			if slots != nil || damaged != 0 {
				t.Fatal("error with results")
			}
			return
		}
		for _, s := range slots {
			if s.seq == 0 {
				t.Fatalf("bad slot %+v", s)
			}
			var p [slotSize]byte
			encodeSlot(p[:], s)
			i := int(s.seq % assignSlots)
			if string(p[:]) != string(b[i*slotSize:(i+1)*slotSize]) {
				t.Fatalf("slot %d does not re-encode to its bytes", i)
			}
		}
		if len(slots)+damaged > assignSlots {
			t.Fatalf("%d slots + %d damaged > %d", len(slots), damaged, assignSlots)
		}
	})
}
