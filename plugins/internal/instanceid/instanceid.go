// Package instanceid gives a plugin instance a name that is unique across
// agents and stable across restarts: a random id created once in the
// stage's data directory.
//
// Why: a fence (pipeline.Fence.Stream) names a channel partition of one
// agent, and two agents of the same config have channels of the same names.
// A sink writing to a shared system (Redis, Kafka) prefixes its fences with
// this id so two agents never skip each other's batches as replays.
package instanceid

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

const fileName = "instance-id"

// Load returns the id kept in dir, creating dir and the id on first use.
// The file is written to a temporary name, synced and renamed, so a crash
// leaves either no id or the whole id.
func Load(dir string) (string, error) {
	p := filepath.Join(dir, fileName)
	if b, err := os.ReadFile(p); err == nil {
		id := strings.TrimSpace(string(b))
		if !valid(id) {
			return "", fmt.Errorf("instance id %s: %q is not 16 lowercase hex digits", p, id)
		}
		return id, nil
	} else if !os.IsNotExist(err) {
		return "", fmt.Errorf("instance id: %w", err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", fmt.Errorf("instance id: %w", err)
	}
	var raw [8]byte
	if _, err := rand.Read(raw[:]); err != nil {
		return "", err
	}
	id := hex.EncodeToString(raw[:])
	tmp := p + ".tmp"
	f, err := os.Create(tmp)
	if err != nil {
		return "", fmt.Errorf("instance id: %w", err)
	}
	_, err = f.WriteString(id + "\n")
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, p)
	}
	if err != nil {
		return "", fmt.Errorf("instance id: %w", err)
	}
	if d, err := os.Open(dir); err == nil {
		d.Sync()
		d.Close()
	}
	return id, nil
}

func valid(id string) bool {
	if len(id) != 16 {
		return false
	}
	for _, c := range id {
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return false
		}
	}
	return true
}
