// Package conf holds the example configs. agent.toml is embedded so that
// `sluice demo` runs exactly the file in this folder.
package conf

import _ "embed"

// Demo is conf/agent.toml, the topology `sluice demo` runs.
//
//go:embed agent.toml
var Demo []byte
