// Package kafka holds the kafka sink and the kafka source (IBM/sarama).
//
// Delivery into Kafka is at-least-once: the sink returns from Write only
// after Kafka acknowledged (acks=all, idempotent producer) every message of
// the batch, and a batch that failed part-way is sent again whole. Every
// message carries header sluice.producer (agent instance + input stream)
// and sluice.seq (the batch's channel offset "." the message's ordinal among
// the batch's messages to its partition), and goes to a partition chosen
// from its key or, without a key, from the batch offset — so a re-sent
// message lands in the same partition with the same sequence, and the kafka
// source drops it: it keeps, per partition and producer, the newest batch
// and the ordinals of it seen (position.go's mark), inside its position
// (which the runner stores atomically with the output). docs/adr/0007
// explains why not Kafka transactions.
package kafka

import (
	"strconv"
	"time"
)

// Header names the sink adds and the source reads.
const (
	HeaderProducer = "sluice.producer"
	HeaderSeq      = "sluice.seq"
)

// seq is a message's place in its producer's output: batch offset, then
// ordinal among the batch's messages to the same partition. Batches only
// grow for one producer; ordinals may arrive with gaps that a re-sent batch
// fills (see mark).
type seq struct {
	Batch uint64
	Index uint32
}

func (s seq) less(o seq) bool {
	return s.Batch < o.Batch || s.Batch == o.Batch && s.Index < o.Index
}

func (s seq) String() string {
	return strconv.FormatUint(s.Batch, 10) + "." + strconv.FormatUint(uint64(s.Index), 10)
}

// parseSeq reads "BATCH.INDEX".
func parseSeq(v []byte) (seq, bool) {
	for i, c := range v {
		if c == '.' {
			b, err1 := strconv.ParseUint(string(v[:i]), 10, 64)
			x, err2 := strconv.ParseUint(string(v[i+1:]), 10, 32)
			return seq{b, uint32(x)}, err1 == nil && err2 == nil
		}
	}
	return seq{}, false
}

func timeOf(ns int64) time.Time { return time.Unix(0, ns) }
