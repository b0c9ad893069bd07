#!/usr/bin/env bash
# Go and TypeScript stubs, from buf.gen.yaml with local plugins.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -f buf.gen.yaml ] || exit 0
export PATH="$(pwd)/.tools/bin:$(pwd)/clients/node/node_modules/.bin:$PATH"
.venv/bin/buf generate
