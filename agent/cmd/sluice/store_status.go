package main

import "github.com/sluicehq/sluice/agent/config"

// topCategories summarises the demo's results for the status line.
func topCategories(cfg *config.File) string {
	return "(results store not available yet)"
}
