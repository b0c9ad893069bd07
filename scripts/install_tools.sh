#!/usr/bin/env bash
# Installs what the end-to-end and interop tests drive, into .tools/ inside the
# project (Go binaries) and the clients' own folders (Node modules). Each step
# is skipped when its result is already there, so a second run is quick.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
mkdir -p .tools/bin
export GOBIN="$root/.tools/bin"

go_tool() {  # name, module@version
  [ -x ".tools/bin/$1" ] || go install "$2"
}
go_tool grpcurl github.com/fullstorydev/grpcurl/cmd/grpcurl@v1.9.4
go_tool grpc-health-probe github.com/grpc-ecosystem/grpc-health-probe@v0.4.63
