package orders

import (
	"bytes"
	"slices"
	"sync"

	"github.com/sluicehq/sluice/agent/event"
)

// MemState is an in-memory StateStore for tests and benchmarks. It
// copies keys and values in and out, as a persisting store would, and is
// safe for concurrent use (a plugin's instance pool may share it).
type MemState struct {
	mu sync.Mutex
	m  map[string][]byte
}

// NewMemState returns an empty store.
func NewMemState() *MemState { return &MemState{m: map[string][]byte{}} }

// Get implements StateStore.
func (s *MemState) Get(key []byte) ([]byte, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	v, ok := s.m[string(key)]
	return bytes.Clone(v), ok
}

// Put implements StateStore.
func (s *MemState) Put(key, value []byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.m[string(key)] = bytes.Clone(value)
}

// Delete implements StateStore.
func (s *MemState) Delete(key []byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.m, string(key))
}

// Scan implements StateStore. fn runs without the lock held, on a copy
// taken when Scan was called, so it may use the store itself.
func (s *MemState) Scan(prefix []byte, fn func(key, value []byte) bool) {
	s.mu.Lock()
	var keys []string
	for k := range s.m {
		if bytes.HasPrefix([]byte(k), prefix) {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	vals := make([][]byte, len(keys))
	for i, k := range keys {
		vals[i] = bytes.Clone(s.m[k])
	}
	s.mu.Unlock()
	for i, k := range keys {
		if !fn([]byte(k), vals[i]) {
			return
		}
	}
}

// Len is the number of keys held.
func (s *MemState) Len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.m)
}

// Normalise is the native Go reference of wasm-examples/order-parse: every
// valid order line of batch in becomes an event keyed by its category, with
// the canonical form (AppendCanonical) as body and the order time as event
// time; invalid lines are rejected with the reason.
func Normalise(in []byte, out *event.Builder) ([]Reject, error) {
	var rejects []Reject
	var f Fields
	var body []byte
	err := event.Iterate(in, func(i int, e *event.Event) error {
		if err := Parse(e.Body, &f); err != nil {
			rejects = append(rejects, Reject{Index: i, Reason: err.Error()})
			return nil
		}
		body = AppendCanonical(body[:0], &f)
		out.Add(&event.Event{Time: f.TimeMs * 1e6, Key: f.Category, Body: body})
		return nil
	})
	return rejects, err
}

// Dump returns every key and value, for comparing two stores.
func (s *MemState) Dump() map[string]string {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make(map[string]string, len(s.m))
	for k, v := range s.m {
		out[k] = string(v)
	}
	return out
}
