#!/usr/bin/env bash
# Installs what the end-to-end and interop tests drive, into .tools/ inside the
# project (Go binaries) and the clients' own folders (Node modules). Each step
# is skipped when its result is already there, so a second run is quick.
#
# Without Go or npm the steps that need them are skipped with a warning, and
# the tests that need them skip too; under CI=true a missing toolchain is an
# error instead, since CI must run every test.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
mkdir -p .tools/bin
export GOBIN="$root/.tools/bin"

have() {  # command; warns (or, under CI, fails) when it is missing
  command -v "$1" >/dev/null && return 0
  echo "install_tools: $1 is not installed; the tests that need it will skip" >&2
  [ "${CI:-}" != "true" ] || { echo "install_tools: CI needs $1" >&2; exit 1; }
  return 1
}

go_tool() {  # name, package@version: installs unless that version is there
  local version=${2##*@}
  if [ -x ".tools/bin/$1" ] &&
    go version -m ".tools/bin/$1" | awk '$1 == "mod" {print $3}' | grep -qxF "$version"; then
    return
  fi
  go install "$2"
}

if have go; then
  go_tool grpcurl github.com/fullstorydev/grpcurl/cmd/grpcurl@v1.9.4
  go_tool grpc-health-probe github.com/grpc-ecosystem/grpc-health-probe@v0.4.63
  # The plugins write their versions into the stubs they generate, so the
  # staleness check (scripts/generate_other.sh --check) needs these exactly.
  go_tool protoc-gen-go google.golang.org/protobuf/cmd/protoc-gen-go@v1.36.12
  go_tool protoc-gen-go-grpc google.golang.org/grpc/cmd/protoc-gen-go-grpc@v1.6.2
  go_tool ghz github.com/bojand/ghz/cmd/ghz@v0.120.0
  # The Go client's modules, and a warm build cache for its tests.
  (cd clients/go && go mod download && go build ./...)
fi

if have npm; then
  # npm ci replaces node_modules whole, so it runs only when the lock file
  # changed since the last install.
  stamp=clients/node/node_modules/.installed-lock
  if ! cmp -s clients/node/package-lock.json "$stamp" 2>/dev/null; then
    (cd clients/node && npm ci --no-audit --no-fund --loglevel=error)
    cp clients/node/package-lock.json "$stamp"
  fi
fi
