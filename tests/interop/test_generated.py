"""The Go and TypeScript stubs checked in under clients/ match the contract."""

from __future__ import annotations

import subprocess

from tests.interop._support import NODE_CLIENT, ROOT, TOOLS, need


def test_generated_go_and_typescript_stubs_match_the_contract() -> None:
    for plugin in ("protoc-gen-go", "protoc-gen-go-grpc"):
        need(plugin, where=TOOLS)
    need("protoc-gen-es", where=NODE_CLIENT / "node_modules" / ".bin")

    result = subprocess.run(
        ["bash", "scripts/generate_other.sh", "--check"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )

    assert result.returncode == 0, result.stdout + result.stderr
