"""The load test's request bodies and the checks of their results.

Kept free of Locust (whose import monkey-patches the standard library with gevent), so the
test suite can check the checks. A check raises `WrongResult` when a succeeded task's result
is not the one its request must give: a load test that accepts garbage measures nothing.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.datasets import load_digits

JSON = dict[str, Any]


class WrongResult(Exception):
    """A succeeded task whose result does not answer its request."""


@dataclass(frozen=True)
class Sample:
    """One request body and the check of the result it must give."""

    body: JSON
    check: Callable[[JSON], None]


def model_a_sample(rng: random.Random) -> Sample:
    """An echo request with a random token, so a result cannot come from another task."""
    data = f"load {rng.getrandbits(64):016x}"
    expected = f"Processed message: {data}"

    def check(result: JSON) -> None:
        if result.get("reply") != expected:
            raise WrongResult(f"reply {result.get('reply')!r}, expected {expected!r}")

    return Sample({"data": data}, check)


class Digits:
    """scikit-learn's bundled 8x8 digits, pixels divided by 16, with their true labels.

    Rows the committed weights (`workers/models/weights/digits.onnx`) misclassify (9 of 1797)
    are left out, so every label the load test sends has one right answer and a wrong label
    means the served model is broken or is not the committed one.
    """

    def __init__(self, weights: Path | None = None) -> None:
        # Imported here, not at the top: a process that loaded ONNX Runtime and then forks
        # (Locust's --processes) has children that abort when they exit.
        from workers.models.model_b import WEIGHTS, onnx_session

        digits = load_digits()
        pixels = (digits.data / 16.0).astype(np.float32)
        labels, _ = onnx_session(weights or WEIGHTS).run(
            ["label", "probabilities"], {"pixels": pixels}
        )
        keep = labels == digits.target
        self.pixels: list[list[float]] = pixels[keep].tolist()
        self.labels: list[int] = digits.target[keep].tolist()
        self.left_out = int((~keep).sum())

    def sample(self, rng: random.Random) -> Sample:
        row = rng.randrange(len(self.labels))
        return Sample({"pixels": self.pixels[row]}, digit_check(self.labels[row]))


def digit_check(expected: int) -> Callable[[JSON], None]:
    """The check of a digit's result: the right label, 10 probabilities summing to 1 whose
    largest is the label's."""

    def check(result: JSON) -> None:
        label, probabilities = result.get("label"), result.get("probabilities")
        if label != expected:
            raise WrongResult(f"label {label!r} for a digit {expected}")
        if not isinstance(probabilities, list) or len(probabilities) != 10:
            raise WrongResult(f"probabilities are not 10 numbers: {probabilities!r}")
        if not math.isclose(sum(probabilities), 1.0, abs_tol=1e-3):
            raise WrongResult(f"probabilities sum to {sum(probabilities)}, not 1")
        if max(range(10), key=probabilities.__getitem__) != expected:
            raise WrongResult(f"largest probability is not label {expected}'s: {probabilities}")

    return check
