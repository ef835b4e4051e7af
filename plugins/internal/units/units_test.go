package units

import (
	"strings"
	"testing"

	"github.com/sluicehq/sluice/agent/config"
)

// Sizes are parsed by agent/config; plugins keep their own wording of the
// error. Both must accept and reject the same texts with the same values.
func TestParseSizeMatchesAgentConfig(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want int64
		err  string
	}{
		{in: "4096", want: 4096},
		{in: " 64 KiB ", want: 64 << 10},
		{in: "1.5GB", want: 1500000000},
		{in: "2MiB", want: 2 << 20},
		{in: "", err: `"" is not a size (write e.g. "64KiB", "100MiB", "4096")`},
		{in: "B", err: `"B" is not a size (write e.g. "64KiB", "100MiB", "4096")`},
		{in: "-1KiB", err: `"-1KiB" is not a size (write e.g. "64KiB", "100MiB", "4096")`},
		{in: "lots", err: `"lots" is not a size (write e.g. "64KiB", "100MiB", "4096")`},
	} {
		got, err := ParseSize(tc.in)
		agent, agentErr := config.ParseSize(tc.in)
		if (err == nil) != (agentErr == nil) || got != agent {
			t.Errorf("ParseSize(%q) = %d, %v; agent config: %d, %v", tc.in, got, err, agent, agentErr)
		}
		if tc.err != "" {
			if err == nil || err.Error() != tc.err {
				t.Errorf("ParseSize(%q) error = %v, want %s", tc.in, err, tc.err)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("ParseSize(%q) = %d, %v, want %d", tc.in, got, err, tc.want)
		}
		if back, err := ParseSize(FormatSize(got)); err != nil || back != got {
			t.Errorf("ParseSize(FormatSize(%d)) = %d, %v", got, back, err)
		}
	}
}

func TestDurationPositive(t *testing.T) {
	for _, tc := range []struct {
		text, want string // want "" means no error
	}{
		{"5s", ""},
		{"0s", "ack_timeout: must be greater than zero"},
		{"-1s", `ack_timeout: "-1s" is negative`},
		{"soon", `ack_timeout: "soon" is not a duration`},
	} {
		var d Duration
		if err := d.UnmarshalText([]byte(tc.text)); err != nil {
			t.Fatal(err)
		}
		err := d.Positive("ack_timeout")
		if tc.want == "" && err != nil || tc.want != "" && (err == nil || !strings.HasPrefix(err.Error(), tc.want)) {
			t.Errorf("Positive of %q: %v, want %q", tc.text, err, tc.want)
		}
	}
}
