"""What the benchmark's load generator sends: digits whose right answer is known, as
pre-encoded bodies (the digits themselves, and the filtering of the few the committed model
gets wrong, are `load_testing.samples.Digits`, shared with the Locust users)."""

from __future__ import annotations

from dataclasses import dataclass

import orjson

from load_testing.samples import Digits


@dataclass(frozen=True)
class Sample:
    body: bytes  # the JSON request body, encoded once
    label: int | None  # the digit's true label, which model_b is known to predict; None: no digit


def correct_samples(limit: int = 512) -> list[Sample]:
    """Up to ``limit`` digits (in data set order) that model_b classifies right."""
    digits = Digits()
    return [
        Sample(orjson.dumps({"pixels": pixels}), label)
        for pixels, label in zip(digits.pixels[:limit], digits.labels[:limit], strict=True)
    ]
