"""serialization.png: size, encode time and decode time against payload size, log-log."""

from __future__ import annotations

from pathlib import Path

# The object API rather than pyplot: it renders straight to a file, with no backend to pick
# and no global figure state.
from matplotlib.figure import Figure

from serialization_type_test.bench import Measurement

PANELS = (
    ("size_bytes", "encoded size (bytes)", 1.0),
    ("encode_ns", "encode time (µs)", 1e-3),
    ("decode_ns", "decode time (µs)", 1e-3),
)


def write_plot(path: Path, results: list[Measurement]) -> None:
    """Three panels side by side, one line per format, sharing one legend."""
    formats = list(dict.fromkeys(m.format for m in results))
    figure = Figure(figsize=(16, 5), layout="constrained")
    axes = figure.subplots(1, len(PANELS))
    for ax, (field, label, scale) in zip(axes, PANELS, strict=True):
        for name in formats:
            points = sorted((m.n, getattr(m, field) * scale) for m in results if m.format == name)
            ax.plot(*zip(*points, strict=True), marker="o", label=name)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("payload (float32 values)")
        ax.set_ylabel(label)
        ax.grid(True, which="both", alpha=0.3)
    figure.legend(*axes[0].get_legend_handles_labels(), loc="outside right center")
    figure.savefig(path, dpi=110)
