// Package testkafka starts an in-process Kafka cluster for tests: franz-go's
// kfake, which speaks the real wire protocol, on a loopback port. It is
// closed when the test ends.
package testkafka

import (
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
)

// Start runs a one-broker cluster with each topic created with partitions
// partitions, and returns its bootstrap addresses.
func Start(t testing.TB, partitions int32, topics ...string) []string {
	t.Helper()
	return StartWith(t, nil, partitions, topics...)
}

// StartWith is Start with more kfake options (e.g. kfake.EnableSASL()).
func StartWith(t testing.TB, opts []kfake.Opt, partitions int32, topics ...string) []string {
	t.Helper()
	return Cluster(t, opts, partitions, topics...).ListenAddrs()
}

// Cluster is StartWith returning the cluster itself, for tests that inject
// faults with its Control functions.
func Cluster(t testing.TB, opts []kfake.Opt, partitions int32, topics ...string) *kfake.Cluster {
	t.Helper()
	c, err := kfake.NewCluster(append([]kfake.Opt{
		kfake.NumBrokers(1),
		kfake.SeedTopics(partitions, topics...),
		// Short sessions so groups settle quickly when a member leaves.
		kfake.GroupMinSessionTimeout(100 * time.Millisecond),
	}, opts...)...)
	if err != nil {
		t.Fatalf("kfake: %v", err)
	}
	t.Cleanup(c.Close)
	return c
}
