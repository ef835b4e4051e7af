package topology

import (
	"testing"

	"go.uber.org/goleak"
)

// Every test stops its agent: nothing may be left running.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }
