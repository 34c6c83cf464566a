"""The study's outputs: a Markdown table for the terminal and the README, and results.json."""

from __future__ import annotations

import json
import os
import platform
import sys
from dataclasses import asdict
from importlib import metadata
from pathlib import Path
from typing import Any

from serialization_type_test.bench import Measurement

RAW = "raw-numpy"
HEADER = (
    "format",
    "n floats",
    "size (B)",
    "size ÷ raw",
    "encode µs",
    "decode µs",
    "encode ÷ raw",
    "decode ÷ raw",
)


def _raw_by_size(results: list[Measurement]) -> dict[int, Measurement]:
    return {m.n: m for m in results if m.format == RAW}


def rows(results: list[Measurement]) -> list[dict[str, Any]]:
    """Each measurement with its ratios to the raw numpy floor of the same size."""
    raw = _raw_by_size(results)
    out = []
    for m in results:
        floor = raw.get(m.n)
        row: dict[str, Any] = asdict(m)
        row["encode_us"] = m.encode_ns / 1000
        row["decode_us"] = m.decode_ns / 1000
        if floor is not None:
            row["size_ratio"] = m.size_bytes / floor.size_bytes
            row["encode_ratio"] = m.encode_ns / floor.encode_ns
            row["decode_ratio"] = m.decode_ns / floor.decode_ns
        out.append(row)
    return out


def _us(value: float) -> str:
    """Microseconds with three significant figures, but never in scientific notation."""
    return f"{value:,.0f}" if value >= 100 else f"{value:#.3g}"


def _ratio(row: dict[str, Any], key: str) -> str:
    value = row.get(key)
    return "–" if value is None else (f"{value:,.0f}" if value >= 100 else f"{value:.2f}")


def table(results: list[Measurement]) -> str:
    """A Markdown pipe table, one row per format and size, sizes in ascending order."""
    lines = ["| " + " | ".join(HEADER) + " |", "|---" * len(HEADER) + "|"]
    for row in sorted(rows(results), key=lambda r: r["n"]):
        cells = (
            row["format"],
            f"{row['n']:,}",
            f"{row['size_bytes']:,}",
            _ratio(row, "size_ratio"),
            _us(row["encode_us"]),
            _us(row["decode_us"]),
            _ratio(row, "encode_ratio"),
            _ratio(row, "decode_ratio"),
        )
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "not installed"


def _cpu_model() -> str:
    """The CPU's name from /proc/cpuinfo where there is one (Linux), else platform's guess."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def environment() -> dict[str, Any]:
    """What the numbers depend on, so a reader can tell whether a rerun should match."""
    from google.protobuf.internal import api_implementation

    return {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "cpu": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "protobuf_backend": api_implementation.Type(),
        **{name: _version(name) for name in ("numpy", "protobuf", "orjson", "msgpack")},
    }


def write_json(path: Path, results: list[Measurement], settings: dict[str, Any]) -> None:
    """results.json: the settings, the environment and every row with its ratios."""
    document = {"settings": settings, "environment": environment(), "results": rows(results)}
    path.write_text(json.dumps(document, indent=2) + "\n")
