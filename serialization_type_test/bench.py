"""Timing: the median per-call time of encode and decode, after checking the round trip."""

from __future__ import annotations

import gc
import statistics
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import numpy as np

from serialization_type_test.formats import Array, Codec

# Each timed sample runs the call enough times to last at least this long, so that a 64-float
# encode (well under a microsecond) is measured over thousands of calls, far above the
# resolution and the overhead of perf_counter_ns.
MIN_SAMPLE_NS = 2_000_000


class RoundTripError(AssertionError):
    """A format decoded something other than what it was given: its timings mean nothing."""


@dataclass(frozen=True)
class Measurement:
    """One format on one payload size."""

    format: str
    n: int
    size_bytes: int
    encode_ns: float
    decode_ns: float
    encode_loops: int
    decode_loops: int


def make_payload(n: int, seed: int = 0) -> Array:
    """``n`` standard-normal float32 values: full-precision numbers, the hard case for text."""
    return np.random.default_rng(seed).standard_normal(n, dtype=np.float32)


def check_round_trip(codec: Codec, array: Array) -> bytes:
    """Encode ``array``, decode it again and fail unless the result is an equal float32 array."""
    payload = codec.encode(array)
    if not isinstance(payload, bytes):
        raise RoundTripError(f"{codec.name} encoded to {type(payload).__name__}, not bytes")
    decoded = codec.decode(payload)
    expected_shape = array.shape if codec.carries_shape else (array.size,)
    if not isinstance(decoded, np.ndarray) or decoded.dtype != np.float32:
        raise RoundTripError(f"{codec.name} decoded to {type(decoded).__name__}, not float32")
    if decoded.shape != expected_shape or not np.array_equal(decoded.ravel(), array.ravel()):
        raise RoundTripError(f"{codec.name} did not decode {array.size} floats back to the input")
    return payload


def _loops_for(call: Callable[[], object], min_ns: int) -> int:
    """How many calls make one sample last at least ``min_ns`` (1, 2, 5, 10, 20, ...)."""
    loops = 1
    while True:
        for factor in (1, 2, 5):
            count = loops * factor
            if _sample_ns(call, count) >= min_ns:
                return count
        loops *= 10


def _sample_ns(call: Callable[[], object], loops: int) -> int:
    """Wall time of ``loops`` calls, with the garbage collector off as ``timeit`` does."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        start = time.perf_counter_ns()
        for _ in range(loops):
            call()
        return time.perf_counter_ns() - start
    finally:
        if enabled:
            gc.enable()


def time_call(call: Callable[[], object], repeat: int, min_ns: int) -> tuple[float, int]:
    """Median nanoseconds per call over ``repeat`` samples, and the calls per sample."""
    loops = _loops_for(call, min_ns)  # also the warm-up
    samples = [_sample_ns(call, loops) / loops for _ in range(repeat)]
    return statistics.median(samples), loops


def measure(codec: Codec, array: Array, repeat: int, min_ns: int = MIN_SAMPLE_NS) -> Measurement:
    """Check ``codec`` round-trips ``array``, then time its encode and decode."""
    payload = check_round_trip(codec, array)
    encode_ns, encode_loops = time_call(lambda: codec.encode(array), repeat, min_ns)
    decode_ns, decode_loops = time_call(lambda: codec.decode(payload), repeat, min_ns)
    return Measurement(
        codec.name, array.size, len(payload), encode_ns, decode_ns, encode_loops, decode_loops
    )


def run_study(
    codecs: Iterable[Codec], sizes: Iterable[int], repeat: int, min_ns: int = MIN_SAMPLE_NS
) -> list[Measurement]:
    """Every codec on every size, the same input array for all codecs of a size."""
    codecs = tuple(codecs)
    results: list[Measurement] = []
    for n in sizes:
        array = make_payload(n)
        results.extend(measure(codec, array, repeat, min_ns) for codec in codecs)
    return results
