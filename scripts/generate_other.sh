#!/usr/bin/env bash
# Go and TypeScript stubs, from buf.gen.yaml (the contract) and
# clients/node/buf.gen.yaml (google.rpc for TypeScript), with local plugins.
#
#   bash scripts/generate_other.sh          # write the stubs
#   bash scripts/generate_other.sh --check  # exit 1 and name the stale files
#
# --check generates into a scratch folder and compares it with the checked-in
# stubs, so it never touches the work tree. The plugins come from
# scripts/install_tools.sh (protoc-gen-go, protoc-gen-go-grpc in .tools/bin)
# and `npm ci` in clients/node (protoc-gen-es); their versions are pinned there
# and in clients/node/package-lock.json, because each writes its version into
# every file it generates.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
export PATH="$root/.tools/bin:$root/clients/node/node_modules/.bin:$PATH"
buf="$root/.venv/bin/buf"
generated=(clients/go/gen clients/node/src/gen)

check=false
case "${1:-}" in
  --check) check=true ;;
  "") ;;
  *) echo "usage: $0 [--check]" >&2; exit 2 ;;
esac

for plugin in protoc-gen-go protoc-gen-go-grpc protoc-gen-es; do
  if ! command -v "$plugin" >/dev/null; then
    echo "$plugin is missing; run: bash scripts/install_tools.sh" >&2
    exit 1
  fi
done

generate() {  # base directory the out paths are relative to
  "$buf" generate -o "$1"
  "$buf" generate --template clients/node/buf.gen.yaml -o "$1"
}

if ! $check; then
  generate .
  exit 0
fi

scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
generate "$scratch"
stale=$(
  for dir in "${generated[@]}"; do
    mkdir -p "$scratch/$dir"
    diff -rq "$scratch/$dir" "$dir" 2>&1 || true
  done
)
if [ -n "$stale" ]; then
  echo "stale generated files (run: make generate):"
  echo "$stale" | sed "s|$scratch/||g; s|^|  |"
  exit 1
fi
