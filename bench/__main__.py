"""``python -m bench``: run scenarios, print the table, write JSON and a plot."""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import json
import logging
import os
import sys
import time
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path

from . import SCENARIOS
from ._harness import REPO, Missing, Record
from ._report import machine, plot, table

_DEFAULT_OUT = REPO / "bench" / "results" / "latest.json"
_KEYS = ("scenario", "metric", "echo", "baseline", "baseline_name", "ratio")


def _load(name: str) -> Callable[[bool], list[Record]]:
    """The scenario's ``run``; ``Missing`` when its module is not written yet.

    A module that exists but fails to import is a failure, not a skip.
    """
    module_name = f"bench.{name}"
    if importlib.util.find_spec(module_name) is None:
        raise Missing(f"{module_name} is not written yet")
    module = importlib.import_module(module_name)
    runner: Callable[[bool], list[Record]] = module.run
    return runner


def _check(name: str, records: object) -> list[Record]:
    if not isinstance(records, list):
        raise TypeError(f"{name}: run() returned {type(records).__name__}, not a list")
    for rec in records:
        if not isinstance(rec, dict) or tuple(rec) != _KEYS:
            raise TypeError(f"{name}: malformed record {rec!r}")
        if rec["scenario"] != name:
            raise TypeError(f"{name}: record of scenario {rec['scenario']!r}")
    return records


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description="Measure Echo beside the transport's limit and the usual "
        "alternatives. Every load is bounded and on loopback only.",
    )
    parser.add_argument(
        "scenarios",
        nargs="*",
        metavar="SCENARIO",
        help=f"any of {', '.join(SCENARIOS)} (default: all)",
    )
    parser.add_argument(
        "--quick", action="store_true", help="tiny counts: proves the scenarios run"
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=_DEFAULT_OUT,
        help="JSON file for the records; the plot goes beside it (default: "
        "bench/results/latest.json)",
    )
    parser.add_argument(
        "--profile",
        type=Path,
        metavar="DIR",
        help="run every Echo server under py-spy; samples and summaries go to DIR",
    )
    args = parser.parse_args(argv)
    unknown = [name for name in args.scenarios if name not in SCENARIOS]
    if unknown:
        parser.error(f"unknown scenario(s): {', '.join(unknown)}")
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)

    names = args.scenarios or list(SCENARIOS)
    records: list[Record] = []
    failed: list[str] = []
    skipped: dict[str, str] = {}
    if args.profile:
        os.environ["ECHO_BENCH_PROFILE"] = str(args.profile.resolve())
    for name in names:
        os.environ["ECHO_BENCH_SCENARIO"] = name
        print(f"running {name}{' (quick)' if args.quick else ''} ...", file=sys.stderr)
        started = time.perf_counter()
        try:
            got = _check(name, _load(name)(args.quick))
        except Missing as exc:
            skipped[name] = str(exc)
            print(f"  skipped {name}: {exc}", file=sys.stderr)
            continue
        except Exception:
            failed.append(name)
            traceback.print_exc()
            continue
        records.extend(got)
        print(
            f"  {name}: {len(got)} record(s) in {time.perf_counter() - started:.1f}s",
            file=sys.stderr,
        )

    out: Path = args.out
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(records, indent=2) + "\n")
    meta = {
        "machine": machine(),
        "quick": args.quick,
        "skipped": skipped,
        "failed": failed,
        "when": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
    }
    out.with_suffix(".meta.json").write_text(json.dumps(meta, indent=2) + "\n")
    drawn = plot(records, out.with_suffix(".png"))

    print(table(records))
    print()
    print(f"records: {out}")
    if drawn:
        print(f"plot:    {out.with_suffix('.png')}")
    for name, why in skipped.items():
        print(f"skipped {name}: {why}")
    if failed:
        print(f"FAILED: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
