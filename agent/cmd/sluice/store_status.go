package main

import (
	"fmt"
	"sort"
	"strconv"
	"strings"

	"github.com/sluicehq/sluice/agent/topology"
	"github.com/sluicehq/sluice/plugins/store"
)

// topCategories summarises the newest closed minute in the demo's result
// store: the three categories with the most revenue.
func topCategories(a *topology.Agent, sink string) string {
	sinks := a.Sinks(sink)
	if len(sinks) == 0 {
		return "top: (store not open yet)"
	}
	st, ok := sinks[len(sinks)-1].(*store.Store)
	if !ok {
		return ""
	}
	keys, err := st.Scan("rev:cat:", 100000)
	if err != nil || len(keys) == 0 {
		return "top: (no minute closed yet)"
	}
	last := keys[len(keys)-1].Key
	rev, err := st.HGetAll(last)
	if err != nil {
		return "top: " + err.Error()
	}
	type cat struct {
		name  string
		cents int64
	}
	var cats []cat
	for name, v := range rev {
		n, _ := strconv.ParseInt(v, 10, 64)
		cats = append(cats, cat{name, n})
	}
	sort.Slice(cats, func(i, j int) bool {
		return cats[i].cents > cats[j].cents || cats[i].cents == cats[j].cents && cats[i].name < cats[j].name
	})
	var parts []string
	for i := 0; i < len(cats) && i < 3; i++ {
		parts = append(parts, fmt.Sprintf("%s %d.%02d", cats[i].name, cats[i].cents/100, cats[i].cents%100))
	}
	return fmt.Sprintf("top %s: %s", strings.TrimPrefix(last, "rev:cat:"), strings.Join(parts, ", "))
}
