module github.com/sluicehq/sluice

go 1.26.0

require (
	github.com/BurntSushi/toml v1.6.0
	github.com/nxadm/tail v1.4.11
	github.com/tetratelabs/wazero v1.12.0
	go.etcd.io/bbolt v1.5.0
	go.uber.org/goleak v1.3.0
	golang.org/x/sys v0.50.0
)

require (
	github.com/fsnotify/fsnotify v1.6.0 // indirect
	gopkg.in/tomb.v1 v1.0.0-20141024135613-dd632973f1e7 // indirect
)
