"""What every benchmark report prints (the machine line, a markdown table) and where it goes."""

from __future__ import annotations

import os
import platform
import sqlite3
from collections.abc import Iterable, Sequence
from importlib.metadata import version as dist_version
from pathlib import Path

RESULTS = Path(__file__).with_name("RESULTS.md")


def machine(packages: Sequence[str], *, sqlite: bool = False, extra: str = "") -> str:
    """CPUs, Python, the named packages' versions (and SQLite's), OS and the load average."""
    parts = [f"{os.cpu_count()} CPUs{cpu_model()}", f"Python {platform.python_version()}"]
    parts += [f"{name} {dist_version(name)}" for name in packages]
    if sqlite:
        parts.append(f"SQLite {sqlite3.sqlite_version}")
    if extra:
        parts.append(extra)
    parts.append(f"{platform.system()} {platform.machine()}")
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    return ", ".join(parts[:-1]) + f", {parts[-1]}; load average at the end {load}"


def cpu_model() -> str:
    """` (model, MHz)` from /proc/cpuinfo where there is one: sections from different hosts
    of the same size can differ by ~2x in speed."""
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        return ""
    fields = {}
    for line in lines:
        key, _, value = line.partition(":")
        fields.setdefault(key.strip(), value.strip())
    model, mhz = fields.get("model name"), fields.get("cpu MHz")
    if not model:
        return ""
    return f" ({model}{f', {float(mhz):.0f} MHz' if mhz else ''})"


def markdown_table(head: Sequence[str], align: str, rows: Iterable[Sequence[str]]) -> str:
    """`align` is the separator row, e.g. ``"|---|---:|"``."""
    lines = ["| " + " | ".join(head) + " |", align]
    lines += ["| " + " | ".join(cells) + " |" for cells in rows]
    return "\n".join(lines)


def append_section(section: str, results: Path = RESULTS) -> None:
    """Append a report section to tests/bench/RESULTS.md (earlier sections stay as they are)."""
    text = results.read_text(encoding="utf-8") if results.exists() else "# Benchmark results\n"
    results.write_text(text.rstrip("\n") + "\n\n" + section.rstrip("\n") + "\n", encoding="utf-8")
    print(f"\nappended to {results}")
