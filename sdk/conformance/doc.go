// Package conformance holds the SDK conformance suite: the same conformance
// plugin written with each SDK (plugins/go, plugins/c, plugins/as), ABI test
// vectors in testdata/vectors, and a test that builds the three from source
// and runs the vectors and behaviours against each through agent/wasmhost.
// See README.md for the plugin's behaviour. The package has no API.
package conformance
