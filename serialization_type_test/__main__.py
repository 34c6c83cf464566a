"""``python -m serialization_type_test``: run the study, print the table, write json and png."""

from __future__ import annotations

import argparse
from pathlib import Path

from serialization_type_test.bench import MIN_SAMPLE_NS, run_study
from serialization_type_test.formats import CODECS
from serialization_type_test.plot import write_plot
from serialization_type_test.report import table, write_json

DEFAULT_SIZES = (64, 1_024, 16_384, 262_144, 1_048_576)
DEFAULT_OUT = Path(__file__).resolve().parent / "results"


def _sizes(text: str) -> list[int]:
    """``"64,1024"`` → ``[64, 1024]``; ``_`` separators allowed, every size at least 1."""
    try:
        sizes = [int(part) for part in text.split(",") if part.strip()]
    except ValueError as error:
        raise argparse.ArgumentTypeError(f"not a list of integers: {text!r}") from error
    if not sizes or min(sizes) < 1:
        raise argparse.ArgumentTypeError(f"sizes must be positive integers: {text!r}")
    return sizes


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m serialization_type_test", description=__doc__)
    parser.add_argument(
        "--sizes",
        type=_sizes,
        default=list(DEFAULT_SIZES),
        help="comma-separated payload sizes in float32 values (default: %(default)s)",
    )
    parser.add_argument(
        "--repeat", type=int, default=7, help="timed samples per measurement; the median is kept"
    )
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="folder for the outputs")
    args = parser.parse_args(argv)
    if args.repeat < 1:
        parser.error("--repeat must be at least 1")

    results = run_study(CODECS, args.sizes, args.repeat)
    print(table(results))
    args.out.mkdir(parents=True, exist_ok=True)
    settings = {"sizes": args.sizes, "repeat": args.repeat, "min_sample_ns": MIN_SAMPLE_NS}
    write_json(args.out / "results.json", results, settings)
    write_plot(args.out / "serialization.png", results)
    print(f"\nwrote {args.out / 'results.json'} and {args.out / 'serialization.png'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
