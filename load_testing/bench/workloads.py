"""What a benchmark client sends to which model, and how it checks each answer.

- ``digits``: model_b (and the baseline) on digits it is known to classify right: the label
  must be the digit's true label.
- ``big_mlp``: the same digits to big_mlp, whose random weights give arbitrary answers: the
  label must be one of 0..9 and the 10 probabilities must sum to 1.
- ``sleep``: ``{"ms": n}`` to the sleep model: the answer must be ``{"slept_ms": n}``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson

from load_testing.samples import Digits

PROBABILITY_SUM_TOLERANCE = 1e-3


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


class AnswerError(Exception):
    """An answer that is not the right one; the message is the error's kind."""


@dataclass(frozen=True)
class Workload:
    model: str  # POST /predict/{model}
    samples: list[Sample]
    check: Callable[[dict[str, Any], Sample], None]  # raises AnswerError on a wrong result


def digits(samples: list[Sample] | None = None) -> Workload:
    return Workload("model_b", samples or correct_samples(), _check_digit)


def big_mlp(samples: list[Sample] | None = None) -> Workload:
    return Workload("big_mlp", samples or correct_samples(), _check_any_digit)


def sleep(ms: int) -> Workload:
    def check(result: dict[str, Any], sample: Sample) -> None:
        if result.get("slept_ms") != ms:
            raise AnswerError("wrong slept_ms")

    return Workload("sleep", [Sample(orjson.dumps({"ms": ms}), label=None)], check)


def _probabilities(result: dict[str, Any]) -> list[float]:
    probabilities = result.get("probabilities")
    if not isinstance(probabilities, list) or len(probabilities) != 10:
        raise AnswerError("bad probabilities")
    return probabilities


def _check_digit(result: dict[str, Any], sample: Sample) -> None:
    if result.get("label") != sample.label:
        raise AnswerError("wrong label")
    _probabilities(result)


def _check_any_digit(result: dict[str, Any], sample: Sample) -> None:
    label = result.get("label")
    if not isinstance(label, int) or not 0 <= label <= 9:
        raise AnswerError("label not in 0..9")
    if not math.isclose(sum(_probabilities(result)), 1.0, abs_tol=PROBABILITY_SUM_TOLERANCE):
        raise AnswerError("probabilities do not sum to 1")
