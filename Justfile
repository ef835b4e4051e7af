# Sluice tasks. `just --list` shows them. Every recipe is a plain command you
# can also run by hand.

fuzztime := "30s"

# Build the sluice binary into bin/sluice
build:
    go build -o bin/sluice ./agent/cmd/sluice

# Run the order-analysis demo (Ctrl-C to stop; data in .sluice/demo)
demo:
    go run ./agent/cmd/sluice demo

# The whole test suite, installing what it needs (the README's test command)
test:
    ./scripts/test

# End-to-end benchmark: 1M orders, one row per example language
bench:
    go run ./agent/cmd/sluice bench

# Micro-benchmarks of the channel and the WASM host, reported as ratios to raw baselines
bench-micro:
    go test -bench . -run '^$' -benchtime 2x ./agent/channel ./agent/wasmhost

# Build every example plugin from source
examples:
    #!/usr/bin/env bash
    set -euo pipefail
    for d in wasm-examples/*/ wasm-examples/*/*/; do
        case "$d" in *internal*|*testdata*) continue;; esac
        if ls "$d"*.go "$d"*.c "$d"asconfig.json >/dev/null 2>&1; then
            go run ./agent/cmd/sluice plugin build "$d"
        fi
    done

# Run every fuzz target for {{fuzztime}} each
fuzz:
    #!/usr/bin/env bash
    set -euo pipefail
    grep -rl --include='*_test.go' '^func Fuzz' . | grep -v node_modules | while read -r f; do
        pkg="./$(dirname "${f#./}")"
        for fn in $(grep -o '^func Fuzz[A-Za-z0-9_]*' "$f" | cut -d' ' -f2); do
            echo "==> $pkg $fn"
            go test -run '^$' -fuzz "^${fn}\$" -fuzztime {{fuzztime}} "$pkg"
        done
    done

# Format every Go file
fmt:
    gofmt -w $(git ls-files '*.go')

# Static checks: gofmt and go vet
lint:
    #!/usr/bin/env bash
    set -euo pipefail
    out=$(gofmt -l $(git ls-files '*.go'))
    if [ -n "$out" ]; then echo "gofmt would change:"; echo "$out"; exit 1; fi
    go vet ./...
