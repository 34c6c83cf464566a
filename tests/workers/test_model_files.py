"""The model files the workers load: the committed digits model and the generated big MLP."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from workers.models import make_big_mlp, train_digits

DIGITS = train_digits.DEFAULT_OUT


def _session(path: Path) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def _accuracy(path: Path, split: train_digits.Split) -> tuple[float, np.ndarray]:
    labels, probabilities = _session(path).run(["label", "probabilities"], {"pixels": split.x_test})
    return float(np.mean(labels == split.y_test)), probabilities


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _io(session: ort.InferenceSession) -> list[tuple[str, str, list[object]]]:
    return [(v.name, v.type, v.shape) for v in [*session.get_inputs(), *session.get_outputs()]]


@pytest.fixture(scope="module")
def split() -> train_digits.Split:
    return train_digits.load_split()


def test_committed_digits_model_has_the_contract_model_b_uses() -> None:
    assert _io(_session(DIGITS)) == [
        ("pixels", "tensor(float)", ["batch", 64]),
        ("label", "tensor(int64)", ["batch"]),
        ("probabilities", "tensor(float)", ["batch", 10]),
    ]


def test_committed_digits_model_is_accurate_on_held_out_split(
    split: train_digits.Split,
) -> None:
    accuracy, probabilities = _accuracy(DIGITS, split)

    assert len(split.y_test) == 360
    assert accuracy >= 0.97
    assert probabilities.shape == (360, 10)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, atol=1e-5)


def test_committed_digits_record_matches_the_file(split: train_digits.Split) -> None:
    record = json.loads(DIGITS.with_suffix(".json").read_text())

    assert record["sha256"] == _sha256(DIGITS)
    assert record["held_out_accuracy"] == pytest.approx(_accuracy(DIGITS, split)[0], abs=1e-6)


def test_train_digits_reproduces_the_committed_model(
    tmp_path: Path, split: train_digits.Split
) -> None:
    out = tmp_path / "x.onnx"

    assert train_digits.main(["--out", str(out)]) == 0

    accuracy, _ = _accuracy(out, split)
    committed, _ = _accuracy(DIGITS, split)
    # Another BLAS may round the training differently and flip a sample or two; more than
    # that means the recipe (data, split, seed or model) changed.
    assert accuracy >= 0.97
    assert abs(accuracy - committed) <= 2 / len(split.y_test)
    assert json.loads(out.with_suffix(".json").read_text())["sha256"] == _sha256(out)


@pytest.fixture(scope="module")
def big_mlp(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("big") / "big_mlp.onnx"
    assert make_big_mlp.main(["--out", str(out)]) == 0
    return out


def test_big_mlp_has_over_10m_parameters(big_mlp: Path) -> None:
    model = onnx.load(str(big_mlp))
    count = sum(int(np.prod(tensor.dims)) for tensor in model.graph.initializer)

    assert count == make_big_mlp.parameter_count(make_big_mlp.DEFAULT_HIDDEN)
    assert count >= 10_000_000


@pytest.mark.parametrize("batch", [1, 8])
def test_big_mlp_runs_a_batch(big_mlp: Path, split: train_digits.Split, batch: int) -> None:
    session = _session(big_mlp)
    assert _io(session) == [
        ("pixels", "tensor(float)", ["batch", 64]),
        ("label", "tensor(int64)", ["batch"]),
        ("probabilities", "tensor(float)", ["batch", 10]),
    ]

    labels, probabilities = session.run(
        ["label", "probabilities"], {"pixels": split.x_test[:batch]}
    )

    assert labels.shape == (batch,)
    assert labels.dtype == np.int64
    assert probabilities.shape == (batch, 10)
    assert np.all(np.isfinite(probabilities))
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, atol=1e-5)
    np.testing.assert_array_equal(labels, probabilities.argmax(axis=1))
    # Not saturated: real weights give a spread, not a one-hot or a constant.
    assert len(np.unique(probabilities[0])) > 1
    assert probabilities.max() < 0.999


def test_big_mlp_outputs_differ_between_inputs(big_mlp: Path, split: train_digits.Split) -> None:
    _, probabilities = _session(big_mlp).run(
        ["label", "probabilities"], {"pixels": split.x_test[:8]}
    )

    assert not np.allclose(probabilities, probabilities[0])


def test_big_mlp_is_deterministic(big_mlp: Path, tmp_path: Path) -> None:
    again = tmp_path / "again.onnx"

    assert make_big_mlp.main(["--out", str(again)]) == 0

    assert _sha256(again) == _sha256(big_mlp)


async def test_model_b_answers_a_batch_row_by_row_and_refuses_a_bad_request() -> None:
    from inferq.settings import WorkerSettings
    from proto import models_pb2
    from workers.models.model_b import ModelB

    model = ModelB(WorkerSettings())
    await model.load()
    rows = [[i / 64 for i in range(64)], [1 - i / 64 for i in range(64)], [0.0] * 64]
    answers = await model.process_batch([models_pb2.ModelBRequest(pixels=r) for r in rows])
    alone = [(await model.process_batch([models_pb2.ModelBRequest(pixels=r)]))[0] for r in rows]
    assert [a.label for a in answers] == [a.label for a in alone]
    for batched, single in zip(answers, alone, strict=True):
        assert list(batched.probabilities) == pytest.approx(list(single.probabilities), abs=1e-6)
    good = models_pb2.ModelBRequest(pixels=[0.5] * 64)
    with pytest.raises(ValueError, match="64 values, got 63"):
        await model.process_batch([good, models_pb2.ModelBRequest(pixels=[0.5] * 63)])
    with pytest.raises(ValueError, match="in 0..1"):
        await model.process_batch([good, models_pb2.ModelBRequest(pixels=[2.0] * 64)])
