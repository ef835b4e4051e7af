// Package toolchain finds the compilers that build Sluice WASM plugins from
// source — go, clang with wasm-ld, node with the AssemblyScript compiler asc —
// and names the Debian or npm package to install when one is missing.
//
// It is shared by agent/plugintool (what `sluice plugin build` runs) and
// sdk/internal/pluginbuild (what the SDK tests build with), which differ only
// in the flags they pass; the lookup and its error texts live here once.
package toolchain

import (
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
)

// Lang is a plugin language.
type Lang string

// The supported languages, as `--lang` spells them.
const (
	Go             Lang = "go"
	C              Lang = "c"
	AssemblyScript Lang = "as"
)

// MissingToolError says which package provides a tool that is not installed.
type MissingToolError struct {
	Tool    string
	Install string // e.g. "the Debian package clang"
}

func (e *MissingToolError) Error() string {
	return e.Tool + " not found: install " + e.Install
}

// GoCommand returns the go command: the one on PATH, else the toolchain that
// built the running binary when it is still there.
func GoCommand() (string, error) {
	if p, err := exec.LookPath("go"); err == nil {
		return p, nil
	}
	p := filepath.Join(runtime.GOROOT(), "bin", "go")
	if _, err := os.Stat(p); err != nil {
		return "", &MissingToolError{Tool: "go", Install: "Go 1.24 or newer (https://go.dev/dl, or the Debian package golang-go)"}
	}
	return p, nil
}

// Clang returns clang's path once both clang and the wasm-ld it links with
// are installed.
func Clang() (string, error) {
	clang, err := exec.LookPath("clang")
	if err != nil {
		return "", &MissingToolError{Tool: "clang", Install: "the Debian packages clang lld wasi-libc libclang-rt-14-dev-wasm32"}
	}
	if _, err := exec.LookPath("wasm-ld"); err != nil {
		return "", &MissingToolError{Tool: "wasm-ld", Install: "the Debian package lld"}
	}
	return clang, nil
}

// Node returns the path of node, which runs asc.
func Node() (string, error) {
	node, err := exec.LookPath("node")
	if err != nil {
		return "", &MissingToolError{Tool: "node", Install: "the Debian packages nodejs npm"}
	}
	return node, nil
}

// ASC returns the AssemblyScript compiler script installed by `npm ci` in
// packageDir (packageDir/node_modules/assemblyscript/bin/asc.js), to be run
// with Node.
func ASC(packageDir string) (string, error) {
	asc := filepath.Join(packageDir, "node_modules", "assemblyscript", "bin", "asc.js")
	if _, err := os.Stat(asc); err != nil {
		return "", &MissingToolError{Tool: "asc (AssemblyScript compiler)",
			Install: "the npm package assemblyscript: run `npm ci` in " + packageDir}
	}
	return asc, nil
}

// Hint names the Debian package behind a typical C toolchain failure in
// clang's output msg, as a line "hint: install …", or "" when msg shows none.
func Hint(msg string) string {
	switch {
	case strings.Contains(msg, "wasm-ld"):
		return "hint: install the Debian package lld"
	case strings.Contains(msg, "libclang_rt.builtins-wasm32"):
		return "hint: install the Debian package libclang-rt-14-dev-wasm32"
	case strings.Contains(msg, "crt1") || strings.Contains(msg, ".h' file not found") || strings.Contains(msg, "-lc"):
		return "hint: install the Debian package wasi-libc"
	}
	return ""
}
