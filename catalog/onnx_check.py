"""Validation of an uploaded ONNX file, before anything is stored or served.

`check_model` refuses a file over the size limit, then hands the file to a child process
(``python -m catalog.onnx_check``) that runs every other check under an address-space limit
and a wall-clock timeout, and is killed when it passes it. The child parses the model; refuses
external data (the upload is one file; a tensor pointing outside it is the path-traversal
family of CVE-2022-25882 and CVE-2024-27318) before anything could open such a path; refuses
operator domains outside ``INFERQ_ALLOWED_OPERATOR_DOMAINS``; runs ``onnx.checker`` with the
full check; refuses inputs and outputs that are not tensors (skl2onnx's ZipMap above all); and
trial-loads the model in ONNX Runtime. So a file that crashes, hangs or exhausts memory in the
parser, the checker or ONNX Runtime costs the caller a refusal (`InvalidModel`), never its
process. The child answers with the model's `Signature` or the refusal, as JSON in a file.

A refusal's ``reason`` detail is one of: ``too_large`` (413), ``unreadable``, ``external_data``,
``operator_domain``, ``invalid`` (onnx.checker), ``zipmap``, ``non_tensor``,
``unsupported_type``, ``load_failed`` (ONNX Runtime), ``memory``, ``timeout``, ``crashed``.

`check_model` blocks for as long as the trial load takes (up to the timeout): async code calls
it in a thread (``await anyio.to_thread.run_sync(check_model, data, settings)``).
"""

from __future__ import annotations

import json
import logging
import os
import resource
import subprocess
import sys
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import onnx
from google.protobuf.message import DecodeError

from catalog.signature import Signature
from inferq.errors import InvalidModel, ModelTooLarge
from inferq.settings import CatalogSettings

logger = logging.getLogger(__name__)

#: The directory ``python -m catalog.onnx_check`` runs in, so the child imports this package.
_PACKAGE_ROOT = Path(__file__).resolve().parents[1]
#: Libraries that start a thread per core (OpenBLAS under numpy, OpenMP) start one in the child.
_ONE_THREAD = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
_STDERR_TAIL = 2000
#: What runs the checks in the child; the model's path, the answer's and the limits follow.
_CHILD_COMMAND = (sys.executable, "-m", "catalog.onnx_check")


def check_model(data: bytes, settings: CatalogSettings) -> Signature:
    """The signature of the ONNX model ``data``, or `InvalidModel` (`ModelTooLarge` for a file
    over ``max_model_bytes``) with a message saying what is wrong and how to fix it, and a
    ``reason`` detail naming the check that refused it."""
    if len(data) > settings.max_model_bytes:
        raise ModelTooLarge(
            f"The model file is {len(data)} bytes; this server accepts at most "
            f"{settings.max_model_bytes} (INFERQ_MAX_MODEL_BYTES). Upload a smaller model "
            "(for example quantized, or with float16 weights), or raise the limit.",
            reason="too_large",
        )
    with tempfile.TemporaryDirectory(prefix="inferq-check-") as scratch:
        model_path = Path(scratch, "model.onnx")
        model_path.write_bytes(data)
        answer = _run_child(model_path, Path(scratch, "answer.json"), settings)
    if "error" in answer:
        raise InvalidModel(answer["error"]["message"], reason=answer["error"]["reason"])
    return Signature.from_json(answer["signature"])


def allowed_domains(settings: CatalogSettings) -> set[str]:
    """The operator domains ``settings`` allows, with ``''`` read as ``ai.onnx``."""
    return {_domain(name.strip()) for name in settings.allowed_operator_domains.split(",")}


def _run_child(model_path: Path, answer_path: Path, settings: CatalogSettings) -> dict[str, Any]:
    limits = {
        "memory_bytes": settings.validation_memory_bytes,
        "allowed_domains": sorted(allowed_domains(settings)),
    }
    command = [*_CHILD_COMMAND, str(model_path), str(answer_path), json.dumps(limits)]
    stderr_path = answer_path.with_name("stderr.txt")
    with stderr_path.open("wb") as stderr:
        try:
            child = subprocess.run(  # run() kills the child when the timeout passes
                command,
                cwd=_PACKAGE_ROOT,
                env={**os.environ, **_ONE_THREAD},
                stdin=subprocess.DEVNULL,
                stdout=stderr,
                stderr=stderr,
                timeout=settings.validation_timeout_s,
                check=False,
            )
        except subprocess.TimeoutExpired:
            return _refusal(
                "timeout",
                f"Checking and loading the model took longer than {settings.validation_timeout_s}"
                " s (INFERQ_VALIDATION_TIMEOUT_S), so the check was stopped. A model this slow to "
                "load is likely too large or malformed; simplify it, or raise the limit.",
            )
    if child.returncode == 0 and answer_path.exists():
        answer: dict[str, Any] = json.loads(answer_path.read_text(encoding="utf-8"))
        return answer
    how = (
        f"was killed by signal {-child.returncode}"
        if child.returncode < 0
        else f"exited with status {child.returncode}"
    )
    tail = stderr_path.read_bytes()[-_STDERR_TAIL:].decode("utf-8", "replace").strip()
    logger.warning("the check of an uploaded model %s: %s", how, tail or "(no output)")
    return _refusal(
        "crashed",
        f"The process that checks and loads the model {how}"
        f"{': ' + tail if tail else ''}. The file crashes the ONNX parser or ONNX Runtime, or "
        f"needs more memory than INFERQ_VALIDATION_MEMORY_BYTES "
        f"({settings.validation_memory_bytes} bytes) allows; export the model again with a "
        "current converter, or raise the limit.",
    )


def _refusal(reason: str, message: str) -> dict[str, Any]:
    return {"error": {"reason": reason, "message": message}}


# The child: ``python -m catalog.onnx_check MODEL ANSWER LIMITS_JSON``.


class _Refused(Exception):
    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


def _main(argv: list[str]) -> None:
    model_path, answer_path, limits_json = argv
    limits = json.loads(limits_json)
    memory = int(limits["memory_bytes"])
    resource.setrlimit(resource.RLIMIT_AS, (memory, memory))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    try:
        signature = _inspect(Path(model_path), set(limits["allowed_domains"]), memory)
        answer = {"signature": signature.to_json()}
    except _Refused as refused:
        answer = _refusal(refused.reason, refused.message)
    Path(answer_path).write_text(json.dumps(answer), encoding="utf-8")


def _inspect(model_path: Path, allowed: set[str], memory: int) -> Signature:
    """Every check after the size limit, in order; the first that fails raises `_Refused`."""
    try:
        model = onnx.load_model_from_string(model_path.read_bytes())
    except DecodeError as exc:
        raise _Refused(
            "unreadable",
            f"The file is not an ONNX model (it does not parse: {exc}). Upload the .onnx file "
            "your exporter wrote (torch.onnx.export, skl2onnx.to_onnx, tf2onnx ...), whole.",
        ) from exc
    _refuse_external_data(model)
    _refuse_domains(model, allowed)
    try:
        onnx.checker.check_model(model, full_check=True)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as exc:
        raise _Refused(
            "invalid",
            f"The model is not valid ONNX (onnx.checker, full check): {_text(exc)}. Export it "
            "again with a current converter, or fix the graph so that onnx.checker.check_model("
            "model, full_check=True) passes.",
        ) from exc
    _refuse_non_tensors(model)
    try:
        signature = Signature.from_graph(model.graph)
    except ValueError as exc:
        raise _Refused("unsupported_type", f"The model cannot be served: {exc}.") from exc
    del model
    _trial_load(model_path, memory)
    return signature


def _refuse_external_data(model: onnx.ModelProto) -> None:
    for where, tensor in _tensors(model):
        if tensor.data_location == onnx.TensorProto.EXTERNAL or len(tensor.external_data):
            location = next((e.value for e in tensor.external_data if e.key == "location"), "")
            raise _Refused(
                "external_data",
                f"Tensor {tensor.name!r} ({where}) keeps its data in an external file "
                f"({location!r}); an upload is one self-contained file and no other file is "
                "read. Save the model with its weights inside: onnx.save_model(model, path, "
                "save_as_external_data=False) (possible below 2 GB).",
            )


def _refuse_domains(model: onnx.ModelProto, allowed: set[str]) -> None:
    local_functions = {(function.domain, function.name) for function in model.functions}
    for where, node in _nodes(model):
        if (node.domain, node.op_type) in local_functions:
            continue  # a function the model defines; its own nodes are checked as well
        domain = _domain(node.domain)
        if domain not in allowed:
            raise _Refused(
                "operator_domain",
                f"Node {node.name or node.op_type!r} ({where}) is operator {node.op_type!r} "
                f"of domain {domain!r}, which this server does not allow (allowed: "
                f"{', '.join(sorted(allowed))}; INFERQ_ALLOWED_OPERATOR_DOMAINS). Export the "
                "model with standard ONNX operators only, or allow the domain if this "
                "server's ONNX Runtime implements it.",
            )


def _refuse_non_tensors(model: onnx.ModelProto) -> None:
    for side, values in (("input", model.graph.input), ("output", model.graph.output)):
        for value in values:
            kind = value.type.WhichOneof("value")
            if kind == "tensor_type":
                continue
            sequence = value.type.sequence_type
            if (
                side == "output"
                and kind == "sequence_type"
                and sequence.elem_type.HasField("map_type")
            ):
                raise _Refused(
                    "zipmap",
                    f"Output {value.name!r} is a sequence of maps (skl2onnx's ZipMap of class "
                    "probabilities); inferq serves tensors only. Export the classifier without "
                    "ZipMap: skl2onnx.to_onnx(model, X, options={id(model): {'zipmap': False}})"
                    " gives the probabilities as one float tensor, a column per class.",
                )
            raise _Refused(
                "non_tensor",
                f"The model's {side} {value.name!r} is a {_kind(kind)}; inferq "
                "serves tensor inputs and outputs only. Export the model so that it takes and "
                "returns plain tensors.",
            )


def _trial_load(model_path: Path, memory: int) -> None:
    import onnxruntime  # only the child loads ONNX Runtime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    try:
        onnxruntime.InferenceSession(str(model_path), options, providers=["CPUExecutionProvider"])
    except MemoryError as exc:
        raise _Refused("memory", _memory_message(memory)) from exc
    except Exception as exc:  # noqa: BLE001 - ONNX Runtime raises its own types, for any cause
        if "bad_alloc" in str(exc):
            raise _Refused("memory", _memory_message(memory)) from exc
        raise _Refused(
            "load_failed",
            f"ONNX Runtime {onnxruntime.__version__} cannot load the model: "
            f"{_text(exc).replace(str(model_path), 'the model')}. Export it "
            "with an opset and operators this version supports, or check the converter's "
            "warnings.",
        ) from exc


def _memory_message(memory: int) -> str:
    return (
        f"Loading the model needs more memory than INFERQ_VALIDATION_MEMORY_BYTES ({memory} "
        "bytes) allows, so it was refused. Make the model smaller (its weights, or a constant "
        "that expands to a huge tensor), or raise the limit."
    )


def _kind(kind: str | None) -> str:
    """``sequence_type`` -> ``sequence``: what a TypeProto holds, in words."""
    return (kind or "value of no type").removesuffix("_type")


def _text(exc: BaseException) -> str:
    return str(exc).strip().rstrip(".")


def _domain(name: str) -> str:
    return name or "ai.onnx"


def _tensors(model: onnx.ModelProto) -> Iterator[tuple[str, onnx.TensorProto]]:
    """Every tensor the model holds: initializers, sparse ones, and node attributes, in the main
    graph, its subgraphs and the model's functions."""
    for where, graph in _graphs(model):
        for tensor in graph.initializer:
            yield f"initializer of {where}", tensor
        for sparse in graph.sparse_initializer:
            yield f"sparse initializer of {where}", sparse.values
            yield f"sparse initializer of {where}", sparse.indices
    for where, node in _nodes(model):
        for attribute in node.attribute:
            at = f"attribute {attribute.name!r} of node {node.name or node.op_type!r} in {where}"
            for tensor in [attribute.t, *attribute.tensors]:
                yield at, tensor
            for sparse in [attribute.sparse_tensor, *attribute.sparse_tensors]:
                yield at, sparse.values
                yield at, sparse.indices


def _nodes(model: onnx.ModelProto) -> Iterator[tuple[str, onnx.NodeProto]]:
    for where, graph in _graphs(model):
        for node in graph.node:
            yield where, node
    for function in model.functions:
        for node in function.node:
            yield f"function {function.name!r}", node


def _graphs(model: onnx.ModelProto) -> Iterator[tuple[str, onnx.GraphProto]]:
    """The main graph and every subgraph (of If, Loop, Scan ...), in it or in a function."""
    pending = [("the main graph", model.graph)]
    for function in model.functions:
        pending.extend(_subgraphs(function.node, f"function {function.name!r}"))
    while pending:
        where, graph = pending.pop()
        yield where, graph
        pending.extend(_subgraphs(graph.node, where))


def _subgraphs(nodes: Iterable[onnx.NodeProto], where: str) -> list[tuple[str, onnx.GraphProto]]:
    found: list[tuple[str, onnx.GraphProto]] = []
    for node in nodes:
        for attribute in node.attribute:
            graphs = [*attribute.graphs, *([attribute.g] if attribute.HasField("g") else [])]
            label = f"subgraph {attribute.name!r} of node {node.name or node.op_type!r} in {where}"
            found.extend((label, graph) for graph in graphs)
    return found


if __name__ == "__main__":
    _main(sys.argv[1:])
