"""What the benchmark scripts share: the machine they ran on, a process's peak memory, and
publishing a result table (printed, and appended to BENCHMARKS.md)."""

from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path

BENCHMARKS = Path(__file__).resolve().parents[1] / "BENCHMARKS.md"


def machine() -> str:
    """The machine and the day, for the line above a result table."""
    memory_gib = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return f"{os.cpu_count()} cores, {memory_gib:.0f} GiB, {datetime.now(UTC):%Y-%m-%d}"


def peak_resident_mib() -> float:
    """This process's peak resident memory since it started this program. (getrusage's
    ru_maxrss would also count the parent's memory copied at fork, before exec.)"""
    status = Path("/proc/self/status").read_text()
    return int(next(line.split()[1] for line in status.splitlines() if line.startswith("VmHWM:"))) / 1024


def publish(title: str, report: str) -> None:
    """Print ``report`` and append it to BENCHMARKS.md under ``title``."""
    print(report)
    with BENCHMARKS.open("a", encoding="utf-8") as benchmarks:
        benchmarks.write(f"\n## {title}\n\n{report}\n")
