"""Regenerate every stub from proto/, or check that the checked-in ones are fresh.

    python scripts/generate.py          # write the stubs
    python scripts/generate.py --check  # exit 1 and name the stale files

Python stubs come from grpcio-tools (with .pyi type stubs, and mypy-protobuf's
for the gRPC stubs) into two private
packages, the server's and the Python client's, so the client never depends on
the server package. protoc writes absolute imports such as ``from echo.v1
import action_pb2``; they are rewritten to point into the private package.
The Go and TypeScript stubs come from ``buf generate`` with local plugins
(buf.gen.yaml); see ``scripts/generate_other.sh``.
"""

from __future__ import annotations

import argparse
import filecmp
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PROTO_DIR = ROOT / "proto"
PYTHON_TARGETS = {
    ROOT / "echo_service" / "_proto": "echo_service._proto",
    ROOT / "clients" / "python" / "echo_client" / "_proto": "echo_client._proto",
}
_IMPORT = re.compile(r"^from echo\.v1 import ", re.MULTILINE)


def _protoc_python(out: Path) -> None:
    import grpc_tools  # noqa: PLC0415 - only needed when generating

    well_known = Path(grpc_tools.__file__).parent / "_proto"
    # mypy-protobuf's plugin types the gRPC stubs, which grpcio-tools leaves
    # untyped; it is installed beside this interpreter.
    typed_grpc = Path(sys.executable).parent / "protoc-gen-mypy_grpc"
    protos = sorted(str(p.relative_to(PROTO_DIR)) for p in PROTO_DIR.rglob("*.proto"))
    command = [
        sys.executable,
        "-m",
        "grpc_tools.protoc",
        f"-I{PROTO_DIR}",
        f"-I{well_known}",
        f"--python_out={out}",
        f"--pyi_out={out}",
        f"--grpc_python_out={out}",
        f"--plugin=protoc-gen-mypy_grpc={typed_grpc}",
        f"--mypy_grpc_out={out}",
        *protos,
    ]
    subprocess.run(command, check=True, cwd=PROTO_DIR)


def _python_tree(package: str, scratch: Path) -> Path:
    """Generate into ``scratch`` and shape it as the private ``package``."""
    tree = scratch / package
    tree.mkdir(parents=True)
    _protoc_python(tree)
    for source in tree.rglob("*.py*"):
        text = source.read_text()
        source.write_text(_IMPORT.sub(f"from {package}.echo.v1 import ", text))
    for folder in [tree, *(p for p in tree.rglob("*") if p.is_dir())]:
        marker = folder / "__init__.py"
        if folder == tree:
            marker.write_text('"""Generated protobuf and gRPC stubs; never edit."""\n')
        else:
            marker.touch()
    return tree


def _differences(fresh: Path, current: Path) -> list[str]:
    if not current.exists():
        return [str(current)]
    stale: list[str] = []
    comparison = filecmp.dircmp(fresh, current, ignore=["__pycache__"])
    pending = [comparison]
    while pending:
        node = pending.pop()
        stale += [str(Path(node.right) / n) for n in node.left_only + node.right_only]
        for name in node.common_files:
            left, right = Path(node.left) / name, Path(node.right) / name
            if left.read_bytes() != right.read_bytes():
                stale.append(str(right))
        pending.extend(node.subdirs.values())
    return stale


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only report stale stubs")
    check = parser.parse_args().check

    stale: list[str] = []
    with tempfile.TemporaryDirectory() as scratch:
        for target, package in PYTHON_TARGETS.items():
            fresh = _python_tree(package, Path(scratch) / target.parent.name)
            if check:
                stale += _differences(fresh, target)
            else:
                shutil.rmtree(target, ignore_errors=True)
                shutil.copytree(fresh, target)

    if stale:
        print("stale generated files (run: python scripts/generate.py):")
        print("\n".join(f"  {path}" for path in sorted(stale)))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
