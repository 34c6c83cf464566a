"""The serialization study (serialization_type_test/): its formats round-trip and its outputs
are what the README's table is made of."""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import numpy as np
import pytest

from serialization_type_test.__main__ import main
from serialization_type_test.bench import RoundTripError, check_round_trip, make_payload
from serialization_type_test.formats import CODECS, Array, Codec, RawNumpy

SIZES = (64, 1024)
NAMES = [codec.name for codec in CODECS]


@pytest.fixture(scope="module")
def study(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """One run of the study's command on a small grid: its output folder and printed table."""
    out = tmp_path_factory.mktemp("study")
    stdout = io.StringIO()
    with contextlib.redirect_stdout(stdout):
        assert main(["--sizes", ",".join(map(str, SIZES)), "--repeat", "3", "--out", str(out)]) == 0
    return out, stdout.getvalue()


@pytest.mark.parametrize("codec", CODECS, ids=NAMES)
def test_every_format_round_trips_awkward_values(codec: Codec) -> None:
    shape = (3, 5) if codec.carries_shape else (15,)
    edge = [
        0.0,
        -0.0,
        1.0,
        -1.0,
        np.finfo(np.float32).max,
        np.finfo(np.float32).min,
        np.finfo(np.float32).tiny,
        1e-45,
        1 / 3,
        16777217.0,
        0.1,
        3.4e38,
        -2.5e-38,
        7.0,
        1e10,
    ]
    array = np.array(edge, dtype=np.float32).reshape(shape)
    decoded = codec.decode(check_round_trip(codec, array))
    assert decoded.dtype == np.float32 and decoded.shape == shape
    assert np.array_equal(decoded, array)


def test_a_format_that_decodes_wrong_is_caught() -> None:
    class Lossy(RawNumpy):
        name = "lossy"

        def decode(self, payload: bytes) -> Array:
            return super().decode(payload).astype(np.float16).astype(np.float32)

    with pytest.raises(RoundTripError):
        check_round_trip(Lossy(), make_payload(64))


def test_table_has_a_row_per_format_and_size(study: tuple[Path, str]) -> None:
    _, printed = study
    rows = [line.split("|")[1:-1] for line in printed.splitlines() if line.startswith("| ")]
    cells = [[cell.strip() for cell in row] for row in rows[1:]]  # rows[0] is the header
    assert sorted((c[0], int(c[1].replace(",", ""))) for c in cells) == sorted(
        (name, n) for name in NAMES for n in SIZES
    )


def test_outputs_are_written(study: tuple[Path, str]) -> None:
    out, _ = study
    png = out / "serialization.png"
    assert png.read_bytes().startswith(b"\x89PNG") and png.stat().st_size > 10_000
    document = json.loads((out / "results.json").read_text())
    assert document["settings"]["sizes"] == list(SIZES)
    assert len(document["results"]) == len(NAMES) * len(SIZES)
    for row in document["results"]:
        assert row["encode_ns"] > 0 and row["decode_ns"] > 0


def test_sizes_make_sense(study: tuple[Path, str]) -> None:
    out, _ = study
    results = json.loads((out / "results.json").read_text())["results"]
    size = {(r["format"], r["n"]): r["size_bytes"] for r in results}
    for n in SIZES:
        assert size["raw-numpy", n] == 4 * n
        # A tag and a length, plus the shape (and dtype), around the same 4n bytes.
        for name in ("proto-repeated", "proto-bytes", "msgpack-bytes"):
            assert 4 * n < size[name, n] <= 4 * n + 48, name
        assert size["msgpack-list", n] == pytest.approx(5 * n, abs=32)  # 1 type byte + float32
        # Text: every float32 needs several digits, plus a comma, where binary needs 4 bytes.
        for name in ("orjson-numpy", "orjson-list", "json-stdlib"):
            assert size[name, n] > 2.5 * size["raw-numpy", n], name
        # tolist() widens to float64, whose repr is longer than orjson's float32 repr; the two
        # float64 writers differ only in how they spell a few small numbers (1e-05 or 0.00001).
        assert size["json-stdlib", n] == pytest.approx(size["orjson-list", n], rel=0.01)
        assert size["orjson-list", n] > 1.5 * size["orjson-numpy", n]
