package testkafka

import "github.com/IBM/sarama"

// ProduceAll is the baseline of the Kafka benchmarks: a bare sarama
// producer loop that sends the n messages msg(0)…msg(n-1) through p and
// returns once every one is acknowledged, or with the first error. p must
// have Return.Successes and Return.Errors set. Sending and collecting in one
// select keeps as many messages in flight as sarama allows, as the sink does.
func ProduceAll(p sarama.AsyncProducer, n int, msg func(i int) *sarama.ProducerMessage) error {
	sent, done := 0, 0
	for done < n {
		var in chan<- *sarama.ProducerMessage
		var m *sarama.ProducerMessage
		if sent < n {
			m, in = msg(sent), p.Input()
		}
		select {
		case in <- m:
			sent++
		case <-p.Successes():
			done++
		case err := <-p.Errors():
			return err
		}
	}
	return nil
}
