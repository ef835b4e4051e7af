package forward

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"

	"github.com/sluicehq/sluice/agent/event"
)

// Frame wire form (version 1), both directions:
//
//	"SLFW" version:u8 type:u8 length:u32le payload[length] crc32c:u32le
//
// The CRC (Castagnoli) covers version, type, length and payload, so a frame
// torn or flipped on the way is refused rather than stored. Payloads:
//
//	batch  (sender → receiver): senderLen:uvarint sender offset:uvarint events
//	ack    (receiver → sender): senderLen:uvarint sender offset:uvarint
//	refuse (receiver → sender): a message for the sender's log; the receiver
//	                            closes the connection after it
//
// events is a batch in the agent/event wire form, exactly as the sender's
// channel stores it. sender and offset are the hop fence: the sender's
// stable id and the batch's offset in its channel (pipeline.Fence).
const (
	protocolVersion = 1
	frameHeaderSize = 10 // magic, version, type, length
	frameTrailSize  = 4  // crc32c
	maxSenderLen    = 1024
)

const (
	frameBatch  byte = 1
	frameAck    byte = 2
	frameRefuse byte = 3
)

var frameMagic = [4]byte{'S', 'L', 'F', 'W'}

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// ErrBadFrame is wrapped by every error about bytes that are not a valid
// frame; the receiver answers them with a refuse frame and hangs up.
var ErrBadFrame = errors.New("forward: bad frame")

type frame struct {
	typ     byte
	payload []byte
}

// appendFrame appends the framed payload to dst.
func appendFrame(dst []byte, typ byte, payload []byte) []byte {
	start := len(dst)
	dst = append(dst, frameMagic[:]...)
	dst = append(dst, protocolVersion, typ)
	dst = binary.LittleEndian.AppendUint32(dst, uint32(len(payload)))
	dst = append(dst, payload...)
	return binary.LittleEndian.AppendUint32(dst, crc32.Checksum(dst[start+4:], castagnoli))
}

// frameParts returns a batch frame as the pieces that go on the wire
// (header + fence head, the batch itself, CRC), so a sender can write them
// with one writev and without copying the batch. hdr is reused.
func batchFrameParts(hdr []byte, sender string, offset uint64, batch []byte) (head, trail []byte) {
	fh := appendFenceHead(nil, sender, offset)
	hdr = append(hdr[:0], frameMagic[:]...)
	hdr = append(hdr, protocolVersion, frameBatch)
	hdr = binary.LittleEndian.AppendUint32(hdr, uint32(len(fh)+len(batch)))
	hdr = append(hdr, fh...)
	crc := crc32.Update(crc32.Checksum(hdr[4:], castagnoli), castagnoli, batch)
	return hdr, binary.LittleEndian.AppendUint32(nil, crc)
}

// readFrame reads one frame of at most maxPayload payload bytes. io.EOF
// means the peer closed cleanly between frames.
func readFrame(r *bufio.Reader, maxPayload int, buf []byte) (frame, []byte, error) {
	var hdr [frameHeaderSize]byte
	if _, err := io.ReadFull(r, hdr[:1]); err != nil {
		return frame{}, buf, err // EOF between frames is a clean close
	}
	if _, err := io.ReadFull(r, hdr[1:]); err != nil {
		return frame{}, buf, fmt.Errorf("%w: header cut short: %v", ErrBadFrame, err)
	}
	if [4]byte(hdr[:4]) != frameMagic {
		return frame{}, buf, fmt.Errorf("%w: bytes %q are not the \"SLFW\" magic (is the peer a sluice forward sink?)", ErrBadFrame, hdr[:4])
	}
	if hdr[4] != protocolVersion {
		return frame{}, buf, fmt.Errorf("%w: protocol version %d, this agent speaks version %d", ErrBadFrame, hdr[4], protocolVersion)
	}
	typ := hdr[5]
	if typ < frameBatch || typ > frameRefuse {
		return frame{}, buf, fmt.Errorf("%w: unknown frame type %d", ErrBadFrame, typ)
	}
	n := binary.LittleEndian.Uint32(hdr[6:])
	if uint64(n) > uint64(maxPayload) {
		return frame{}, buf, fmt.Errorf("%w: payload of %d bytes exceeds max_frame_bytes (%d)", ErrBadFrame, n, maxPayload)
	}
	if cap(buf) < int(n)+frameTrailSize {
		buf = make([]byte, int(n)+frameTrailSize)
	}
	buf = buf[:int(n)+frameTrailSize]
	if _, err := io.ReadFull(r, buf); err != nil {
		return frame{}, buf, fmt.Errorf("%w: payload cut short after the header announced %d bytes: %v", ErrBadFrame, n, err)
	}
	payload := buf[:n]
	crc := crc32.Update(crc32.Checksum(hdr[4:], castagnoli), castagnoli, payload)
	if want := binary.LittleEndian.Uint32(buf[n:]); crc != want {
		return frame{}, buf, fmt.Errorf("%w: checksum %08x, frame says %08x", ErrBadFrame, crc, want)
	}
	return frame{typ: typ, payload: payload}, buf, nil
}

// appendFenceHead appends the sender id and offset that start batch and ack
// payloads.
func appendFenceHead(dst []byte, sender string, offset uint64) []byte {
	dst = binary.AppendUvarint(dst, uint64(len(sender)))
	dst = append(dst, sender...)
	return binary.AppendUvarint(dst, offset)
}

// decodeFenceHead reads the sender id and offset and returns the rest.
func decodeFenceHead(p []byte) (sender string, offset uint64, rest []byte, err error) {
	l, n := binary.Uvarint(p)
	if n <= 0 {
		return "", 0, nil, fmt.Errorf("%w: bad sender length", ErrBadFrame)
	}
	if l == 0 || l > maxSenderLen || l > uint64(len(p)-n) {
		return "", 0, nil, fmt.Errorf("%w: sender length %d (1..%d, within %d bytes)", ErrBadFrame, l, maxSenderLen, len(p)-n)
	}
	sender = string(p[n : n+int(l)])
	p = p[n+int(l):]
	offset, n = binary.Uvarint(p)
	if n <= 0 {
		return "", 0, nil, fmt.Errorf("%w: bad offset", ErrBadFrame)
	}
	return sender, offset, p[n:], nil
}

// decodeBatchPayload checks a batch payload down to every event, so that
// nothing malformed reaches the receiver's channel.
func decodeBatchPayload(p []byte) (sender string, offset uint64, events []byte, count int, err error) {
	sender, offset, events, err = decodeFenceHead(p)
	if err != nil {
		return "", 0, nil, 0, err
	}
	if err := event.Iterate(events, func(int, *event.Event) error { return nil }); err != nil {
		return "", 0, nil, 0, fmt.Errorf("%w: batch from %s at offset %d: %v", ErrBadFrame, sender, offset, err)
	}
	count, _ = event.Count(events)
	return sender, offset, events, count, nil
}

func decodeAckPayload(p []byte) (sender string, offset uint64, err error) {
	sender, offset, rest, err := decodeFenceHead(p)
	if err == nil && len(rest) != 0 {
		err = fmt.Errorf("%w: %d trailing bytes after an ack", ErrBadFrame, len(rest))
	}
	return sender, offset, err
}
