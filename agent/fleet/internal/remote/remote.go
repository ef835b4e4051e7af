// Package remote turns a config offered by an OpAMP server into the config
// text the agent applies, under the agent's local allow list.
//
// The offered config holds whole top-level tables ([sinks.*], [bolts.*],
// …). A table it names replaces the running one only when the allow list
// names it; a table it names but may not change must be identical to the
// running one (a server may send a group's complete file); a table it leaves
// out is kept as it runs. The [agent] table is always the running one's, so
// the server can neither widen the allow list nor swap the trusted keys.
package remote

import (
	"bytes"
	"fmt"
	"reflect"
	"sort"
	"strings"

	"github.com/BurntSushi/toml"
)

// Merge returns running with the tables of offered that allow permits, as
// TOML text, or an error naming every table offered changes without
// permission (then nothing is applied). Both inputs are TOML text.
func Merge(running, offered []byte, allow []string) ([]byte, error) {
	var run, off map[string]any
	if _, err := toml.Decode(string(running), &run); err != nil {
		return nil, fmt.Errorf("running config: %w", err)
	}
	if _, err := toml.Decode(string(offered), &off); err != nil {
		return nil, fmt.Errorf("remote config: %w", err)
	}
	if run == nil {
		run = map[string]any{}
	}
	allowed := map[string]bool{}
	for _, a := range allow {
		if a != "agent" {
			allowed[a] = true
		}
	}
	var refused []string
	for _, k := range sortedKeys(off) {
		if allowed[k] {
			run[k] = off[k]
			continue
		}
		if !reflect.DeepEqual(off[k], run[k]) {
			refused = append(refused, "["+k+"]")
		}
	}
	if len(refused) > 0 {
		list := "nothing"
		if len(allow) > 0 {
			list = strings.Join(allow, ", ")
		}
		return nil, fmt.Errorf("remote config changes %s, which agent.opamp.allow does not permit (it allows %s); nothing was applied",
			strings.Join(refused, ", "), list)
	}
	var b bytes.Buffer
	if err := toml.NewEncoder(&b).Encode(run); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}

func sortedKeys(m map[string]any) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}
