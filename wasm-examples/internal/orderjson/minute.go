package orderjson

// MinuteMs turns a window's minute, in the form AppendMinute writes
// (2026-11-25T12:00), back into unix milliseconds.
func MinuteMs(minute []byte) (int64, error) {
	return parseTS(append(minute[:len(minute):len(minute)], ":00Z"...))
}
