"""Echo's benchmarks: each scenario measured beside its baseline, in one run.

``python -m bench [SCENARIO ...] [--quick] [--out FILE.json]``. See
BENCHMARKS.md for what each scenario compares and the last full run.
"""

from ._harness import Missing, Record, record
from ._report import machine, plot, table

__all__ = ["SCENARIOS", "Missing", "Record", "machine", "plot", "record", "table"]

SCENARIOS = ("executor", "journal", "assign", "bulk", "e2e", "fanout", "memory", "ghz")
"""Every scenario, in the order a full run takes them."""
