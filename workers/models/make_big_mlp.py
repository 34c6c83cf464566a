"""Build a large random MLP as ONNX, for load tests where inference has a real cost.

Run ``python -m workers.models.make_big_mlp [--out PATH] [--hidden N]``. The network is
64 -> N -> N -> N -> 10 with ReLUs (N=2304 by default: 10,794,250 parameters, ~43 MB), with
the same contract as the digits model: ``pixels`` float32 ``[batch, 64]`` in, ``label`` int64
``[batch]`` and ``probabilities`` float32 ``[batch, 10]`` out. Its answers mean nothing; its
cost per batch is what matters. The file is too big to commit, so it is generated, and the
same arguments always give the same bytes.
"""

from __future__ import annotations

import argparse
import hashlib
from collections.abc import Sequence
from itertools import pairwise
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

DEFAULT_OUT = Path(__file__).parent / "weights" / "big_mlp.onnx"
DEFAULT_HIDDEN = 2304
HIDDEN_LAYERS = 3
PIXELS = 64
CLASSES = 10
SEED = 0
# Opset 17 and IR 8 are fixed, not onnx's newest, so that the bytes do not change when the
# onnx package is upgraded and older ONNX Runtime builds still load the file.
OPSET = 17
IR_VERSION = 8


def parameter_count(hidden: int) -> int:
    """Weights plus biases of 64 -> hidden x HIDDEN_LAYERS -> 10."""
    sizes = [PIXELS, *[hidden] * HIDDEN_LAYERS, CLASSES]
    return sum(n_in * n_out + n_out for n_in, n_out in pairwise(sizes))


def _layers(hidden: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """(weight [in, out], bias [out]) per layer, from a fixed seed.

    Hidden layers use He init (std sqrt(2/fan_in)), which keeps the activations' scale through
    the ReLUs, so the outputs stay finite and differ between inputs. The last layer uses
    std sqrt(1/fan_in) so the logits are O(1) and the softmax is not saturated to one-hots.
    """
    rng = np.random.default_rng(SEED)
    sizes = [PIXELS, *[hidden] * HIDDEN_LAYERS, CLASSES]
    layers = []
    for index, (n_in, n_out) in enumerate(pairwise(sizes)):
        gain = 1.0 if index == len(sizes) - 2 else 2.0
        weight = rng.standard_normal((n_in, n_out), dtype=np.float32)
        weight *= np.float32(np.sqrt(gain / n_in))
        bias = rng.standard_normal(n_out, dtype=np.float32) * np.float32(0.01)
        layers.append((weight, bias))
    return layers


def build(hidden: int = DEFAULT_HIDDEN) -> onnx.ModelProto:
    """The MLP as an ONNX model with a dynamic batch dimension named ``batch``."""
    nodes = []
    initializers = []
    current = "pixels"
    layers = _layers(hidden)
    for index, (weight, bias) in enumerate(layers):
        initializers += [
            numpy_helper.from_array(weight, f"w{index}"),
            numpy_helper.from_array(bias, f"b{index}"),
        ]
        # Gemm = one fused X @ W + b per layer; batch is its M dimension, so any batch works.
        nodes.append(helper.make_node("Gemm", [current, f"w{index}", f"b{index}"], [f"z{index}"]))
        current = f"z{index}"
        if index < len(layers) - 1:
            nodes.append(helper.make_node("Relu", [current], [f"h{index}"]))
            current = f"h{index}"
    nodes += [
        helper.make_node("Softmax", [current], ["probabilities"], axis=-1),
        # ArgMax of the probabilities (not the logits) so label always matches what the
        # client sees as the largest probability.
        helper.make_node("ArgMax", ["probabilities"], ["label"], axis=1, keepdims=0),
    ]
    graph = helper.make_graph(
        nodes,
        "big_mlp",
        inputs=[helper.make_tensor_value_info("pixels", TensorProto.FLOAT, ["batch", PIXELS])],
        outputs=[
            helper.make_tensor_value_info("label", TensorProto.INT64, ["batch"]),
            helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["batch", CLASSES]),
        ],
        initializer=initializers,
    )
    model = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", OPSET)],
        producer_name="inferq.make_big_mlp",
        ir_version=IR_VERSION,
    )
    onnx.checker.check_model(model)
    return model


def main(argv: Sequence[str] | None = None) -> int:
    """Build the MLP and write it; 0 on success."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="where to write the .onnx")
    parser.add_argument(
        "--hidden", type=int, default=DEFAULT_HIDDEN, help="width of each hidden layer"
    )
    args = parser.parse_args(argv)
    if args.hidden < 1:
        parser.error("--hidden must be at least 1")

    model_bytes = build(args.hidden).SerializeToString()
    out: Path = args.out
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(model_bytes)
    digest = hashlib.sha256(model_bytes).hexdigest()
    print(
        f"wrote {out}: {parameter_count(args.hidden):,} parameters, "
        f"{len(model_bytes):,} bytes, sha256 {digest}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
