//go:build tools

// Package deps pins modules that parts of Sluice under construction will use,
// so that concurrent work does not race on go.mod. Removed once every module
// is imported by real code.
package deps

import (
	_ "github.com/BurntSushi/toml"
	_ "github.com/fsnotify/fsnotify"
	_ "github.com/nxadm/tail"
	_ "github.com/open-telemetry/opamp-go/client"
	_ "github.com/open-telemetry/opamp-go/server"
	_ "github.com/tetratelabs/wazero"
	_ "go.etcd.io/bbolt"
	_ "go.uber.org/goleak"
	_ "golang.org/x/sys/unix"
)
