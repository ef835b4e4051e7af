package channel

import "errors"

// File is the durable file channel (a segmented write-ahead log); see the
// package comment and docs/adr/0001-channel-format.md.
type File struct {
	opts Options
}

// Open opens (creating if needed) the file channel in opts.Dir and takes an
// exclusive lock on it; a second opener gets an error wrapping ErrLocked that
// names the holder's pid.
func Open(opts Options) (*File, error) {
	return nil, errors.New("channel: file implementation not committed yet")
}
