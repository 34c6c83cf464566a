"""``python -m load_testing.bench doors``: issue 16's benchmark. One gateway and one model_b
worker; at each client count (1, 32) the same closed-loop clients and digits through three
doors, measured in turns (native, OIP REST, gRPC, then the reverse order, round after round)
so the host's drift falls on all alike:

- ``native``: ``POST /predict/model_b?wait=10`` with ``{"pixels": [64 floats]}`` (the
  baseline; aiohttp, one connection per client, as `load_testing.bench.loadgen`);
- ``rest``: ``POST /v2/models/model_b/infer`` with a JSON tensor ``pixels`` FP32 [1, 64];
- ``grpc``: ``inference.GRPCInferenceService/ModelInfer`` with ``raw_input_contents``
  (grpc.aio and the generated stubs; the clients share ``grpc_channels`` channels, each one
  HTTP/2 connection, round-robin).

Every answer is checked (status, label = the digit's true label, 10 probabilities); an error
is counted, never a completion. Each row has the CPU per request of each process and the
worker's mean batch size (tasks per batch, from its Prometheus histogram). Targets:
rest/native and grpc/native throughput >= 0.9 (the median of the rounds; issue 16 aims at
>= 1 for gRPC).

Then a tensor of ``big_width`` (1M) FP32 values through a generic ONNX graph uploaded as
``doubler`` (y = 2x, input ``x`` [batch, N]; ``inferq worker onnx:doubler@1``): OIP REST with
the binary extension, gRPC raw contents, OIP REST JSON and native JSON, each timed end to end
at the client (encode, send, wait, read, decode, the answer checked equal to 2x), in turns,
``big_repeats`` times; medians, and each door's time over OIP JSON's. Writes doors.json.

Two figures say what the throughput ratios leave out, since the clients share the host's 2
cores with the system: each door's *server* CPU per request (gateway, worker, RabbitMQ,
Redis: what a client on another machine would leave to them), and, each round, the gRPC
transport's floor: the same gRPC clients against `load_testing.bench.grpc_floor`, a grpcio
server answering a canned response at once (its CPU per call is grpcio's alone), and the HTTP
transport's: the native door's clients against `load_testing.bench.http_floor` (uvicorn as the
gateway runs it, a canned answer). From the two, each round's ceiling for grpc/native
(`grpc_ceiling`): the native door's CPU per request with the HTTP floor's cost traded for the
gRPC floor's, which no work in inferq's gRPC door can beat where the CPU runs out.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import aiohttp
import grpc
import httpx
import numpy as np
import orjson
import uvloop
from onnx import TensorProto, helper, numpy_helper

from load_testing.bench import report
from load_testing.bench.batching import scrape
from load_testing.bench.measure import Context, Say, cpu_probe, cpu_usage
from load_testing.bench.stack import START_TIMEOUT_S, STOP_TIMEOUT_S, System
from load_testing.bench.workloads import AnswerError
from load_testing.processes import Popen, free_port
from load_testing.samples import Digits

if TYPE_CHECKING:
    from proto import grpc_predict_v2_pb2 as pb
    from proto import grpc_predict_v2_pb2_grpc as pb_grpc

DOORS = ("native", "rest", "grpc")
FLOOR = "grpc_floor"  # the canned-answer gRPC server, measured beside the doors
HTTP_FLOOR = "http_floor"  # its HTTP counterpart, driven like the native door
SERVER_PROCESSES = ("gateway", "worker", "rabbitmq", "redis")
BIG_DOORS = ("rest_binary", "grpc_raw", "rest_json", "native_json")
MIN_RATIO = {"rest": 0.9, "grpc": 0.9}
AIM_RATIO = {"rest": 0.9, "grpc": 1.0}
MODEL = "model_b"
BIG = "doubler"  # the catalog name of the 1M-float graph
WAIT_S = 10.0
BIG_TIMEOUT_S = 120.0
BIG_WAIT_S = 30.0  # the most a `?wait=` may hold (INFERQ_MAX_WAIT_S)
#: Bodies of a 1M-float tensor as JSON are ~20 MB; native ``POST /predict`` is limited by
#: INFERQ_MAX_BODY_BYTES (1 MiB by default), OIP infer by INFERQ_OIP_MAX_BODY_BYTES (64 MiB).
MAX_BODY_BYTES = 128 * 1024 * 1024
GRPC_OPTIONS = [
    ("grpc.max_send_message_length", MAX_BODY_BYTES),
    ("grpc.max_receive_message_length", MAX_BODY_BYTES),
]
ERROR_PAUSE_S = 0.01
STALL_MS = 1000.0  # a request in flight longer than this at a window's end is reported
JSON_HEADERS = {"Content-Type": "application/json"}
#: Raw contents of the datatypes model_b answers (its label is an int32 field).
RAW_DTYPES = {"INT32": "<i4", "INT64": "<i8", "FP32": "<f4"}


@dataclass
class DoorsConfig:
    clients: list[int] = field(default_factory=lambda: [1, 32])
    rounds: int = 5  # each: every door once, at every client count
    window_s: float = 3.0
    warmup_s: float = 1.0
    grpc_channels: int = 8  # shared by the gRPC clients, round-robin (at most one each)
    big_width: int = 1_000_000  # floats in the big tensor (0: no big-tensor part)
    big_repeats: int = 5
    out: Path = Path("load_testing/results/bench")


class DoorsStack(System):
    """A gateway (model changes from loopback, bodies up to `MAX_BODY_BYTES` on every door), a
    model_b worker and, with ``big_width``, a generic worker of the doubler graph."""

    system = "inferq"

    def __init__(self, log_dir: Path, big_width: int) -> None:
        env = {
            "INFERQ_MODEL_CHANGES": "loopback",
            "INFERQ_MAX_BODY_BYTES": str(MAX_BODY_BYTES),
            "INFERQ_OIP_MAX_BODY_BYTES": str(MAX_BODY_BYTES),
            "INFERQ_GRPC_MAX_MESSAGE_BYTES": str(MAX_BODY_BYTES),
        }
        super().__init__(f"bench-{os.urandom(4).hex()}", log_dir, env=env)
        self.big_width = big_width
        self.workers: dict[str, Popen] = {}
        self.big_ref = ""
        self.metrics_port = 0  # of the model_b worker (its batch sizes)
        self.floor_target = ""  # the canned-answer gRPC server's host:port
        self.http_floor_url = ""  # the canned-answer HTTP server's

    def start(self) -> None:
        (self.log_dir / "catalog.db").unlink(missing_ok=True)
        self.start_gateway(START_TIMEOUT_S)
        self.metrics_port = free_port()
        self.workers["worker"] = self.start_worker(
            MODEL, INFERQ_METRICS_PORT=str(self.metrics_port)
        )
        if self.big_width:
            answer = httpx.post(
                f"{self.url}/models/{BIG}/versions",
                content=doubler_graph(self.big_width),
                headers={"Content-Type": "application/octet-stream"},
                timeout=60,
            )
            if answer.status_code != 201:
                raise RuntimeError(f"upload answered {answer.status_code}: {answer.text}")
            self.big_ref = answer.json()["ref"]
            self.workers["worker-big"] = self.start_worker(f"onnx:{self.big_ref}")
            self.wait_live(self.big_ref, 1, START_TIMEOUT_S, self.processes)
        self.wait_live(MODEL, 1, START_TIMEOUT_S, self.processes)
        port = free_port()
        self.workers["floor"] = self.launch(
            "grpc-floor",
            [sys.executable, "-m", "load_testing.bench.grpc_floor", str(port)],
            self.env,
        )
        self.floor_target = f"127.0.0.1:{port}"
        self.wait_for(lambda: _accepts(port), START_TIMEOUT_S, "the gRPC floor", self.processes)
        http_port = free_port()
        self.workers[HTTP_FLOOR] = self.launch(
            "http-floor",
            [sys.executable, "-m", "load_testing.bench.http_floor", str(http_port)],
            self.env,
        )
        self.http_floor_url = f"http://127.0.0.1:{http_port}"
        self.wait_for(
            lambda: _accepts(http_port), START_TIMEOUT_S, "the HTTP floor", self.processes
        )

    def pids(self) -> dict[str, int]:
        return {"gateway": self.processes[0].pid, **{k: p.pid for k, p in self.workers.items()}}

    def close(self, models: Any = (), grace_s: float = STOP_TIMEOUT_S) -> None:
        super().close([MODEL, *([self.big_ref] if self.big_ref else []), *models], grace_s)


def _accepts(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    except OSError:
        return False
    return True


def doubler_graph(width: int) -> bytes:
    """y = 2x, x and y FP32 [batch, width]."""
    two = numpy_helper.from_array(np.array(2.0, np.float32), "two")
    graph = helper.make_graph(
        [helper.make_node("Mul", ["x", "two"], ["y"])],
        "doubler",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", width])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", width])],
        [two],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    return bytes(model.SerializeToString())


# --- the requests of each door, encoded once ------------------------------------------------


@dataclass(frozen=True)
class Digit:
    label: int
    native: bytes  # {"pixels": [...]}
    rest: bytes  # an OIP infer request, JSON tensor
    grpc: pb.ModelInferRequest  # raw contents


def digits(limit: int = 512) -> list[Digit]:
    """The digits model_b is known to classify right (`workloads.correct_samples`)."""
    # Our `inference` protos are imported where used, never with the module: tritonclient's
    # define the same symbols, and one process cannot load both (the suite loads tritonclient).
    from proto import grpc_predict_v2_pb2 as pb

    data = Digits()
    out = []
    for pixels, label in zip(data.pixels[:limit], data.labels[:limit], strict=True):
        tensor = {"name": "pixels", "datatype": "FP32", "shape": [1, 64], "data": pixels}
        request = pb.ModelInferRequest(model_name=MODEL)
        request.inputs.add(name="pixels", datatype="FP32", shape=[1, 64])
        request.raw_input_contents.append(np.asarray(pixels, "<f4").tobytes())
        out.append(
            Digit(
                int(label),
                orjson.dumps({"pixels": pixels}),
                orjson.dumps({"inputs": [tensor]}),
                request,
            )
        )
    return out


def check_label(label: Any, probabilities: Any, digit: Digit) -> None:
    if label is None or int(label) != digit.label:
        raise AnswerError("wrong label")
    if probabilities is None or len(probabilities) != 10:
        raise AnswerError("bad probabilities")


def check_native(status: int, view: dict[str, Any], digit: Digit) -> None:
    if status != 200:
        raise AnswerError(f"HTTP {status}")
    if view.get("status") != "succeeded":
        raise AnswerError(f"task {view.get('status')}")
    result = view.get("result") or {}
    check_label(result.get("label"), result.get("probabilities"), digit)


def check_rest(status: int, answer: dict[str, Any], digit: Digit) -> None:
    if status != 200:
        raise AnswerError(f"HTTP {status}")
    outputs = {o.get("name"): o for o in answer.get("outputs") or []}
    labels = (outputs.get("label") or {}).get("data") or [None]
    probabilities = (outputs.get("probabilities") or {}).get("data")
    check_label(labels[0], probabilities, digit)


def check_status(status: int, answer: dict[str, Any], digit: Digit) -> None:
    """The HTTP floor's answer is canned: only its status tells."""
    if status != 200:
        raise AnswerError(f"HTTP {status}")


def check_grpc(answer: pb.ModelInferResponse, digit: Digit) -> None:
    raw = {
        o.name: np.frombuffer(data, RAW_DTYPES.get(o.datatype, "V1"))
        for o, data in zip(answer.outputs, answer.raw_output_contents, strict=False)
    }
    labels = raw.get("label")
    label = labels[0] if labels is not None and labels.size == 1 else None
    check_label(label, raw.get("probabilities"), digit)


# --- one closed-loop run of one door --------------------------------------------------------

Exchange = Callable[[Digit], Awaitable[None]]


async def _exchanges(
    door: str,
    url: str,
    grpc_target: str,
    clients: int,
    channels: int,
    stack: Any,
    headers: dict[str, str] | None = None,
) -> list[Exchange]:
    """One exchange per client, its connections entered on ``stack``; ``headers``: sent
    with each HTTP request too (an API key)."""
    if door in ("grpc", FLOOR):
        opened = [
            grpc.aio.insecure_channel(grpc_target, options=GRPC_OPTIONS)
            for _ in range(max(1, min(channels, clients)))
        ]
        for channel in opened:
            await stack.enter_async_context(channel)
        from proto import grpc_predict_v2_pb2_grpc as pb_grpc

        stubs = [pb_grpc.GRPCInferenceServiceStub(c) for c in opened]

        def grpc_exchange(stub: pb_grpc.GRPCInferenceServiceStub) -> Exchange:
            async def exchange(digit: Digit) -> None:
                answer = await stub.ModelInfer(digit.grpc, timeout=WAIT_S)
                if door == "grpc":  # the floor's answer is canned
                    check_grpc(answer, digit)

            return exchange

        return [grpc_exchange(stubs[i % len(stubs)]) for i in range(clients)]
    session = await stack.enter_async_context(
        aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=clients, ttl_dns_cache=None),
            timeout=aiohttp.ClientTimeout(total=WAIT_S + 60),
            auto_decompress=False,
        )
    )
    native_shaped = door in ("native", HTTP_FLOOR)
    target = (
        f"{url}/predict/{MODEL}?wait={WAIT_S:g}"
        if native_shaped
        else f"{url}/v2/models/{MODEL}/infer"
    )
    check = {"native": check_native, "rest": check_rest}.get(door, check_status)
    sent = {**JSON_HEADERS, **(headers or {})}

    async def http_exchange(digit: Digit) -> None:
        body = digit.native if native_shaped else digit.rest
        async with session.post(target, data=body, headers=sent) as answer:
            check(answer.status, orjson.loads(await answer.read()), digit)

    return [http_exchange] * clients


async def run_door(
    door: str,
    url: str,
    grpc_target: str,
    clients: int,
    window_s: float,
    warmup_s: float,
    samples: list[Digit],
    channels: int,
    pids: dict[str, int],
    metrics_port: int = 0,
    headers: dict[str, str] | None = None,
) -> dict[str, Any]:
    """``clients`` closed-loop clients through ``door`` for a warm-up, then ``window_s``
    measured: a request counts if it started after the warm-up and ended in the window.
    With ``metrics_port`` (the worker's), the row has the worker's mean batch size;
    ``headers`` go with each HTTP request."""
    latencies: list[float] = []
    errors: dict[str, int] = {}
    probes: list[Any] = []
    batches: list[dict[str, float]] = []
    in_flight: list[float | None] = [None] * clients  # when each client's request started
    longest: list[float] = []  # at the end of the window, the oldest request still in flight
    async with contextlib.AsyncExitStack() as stack:
        exchanges = await _exchanges(door, url, grpc_target, clients, channels, stack, headers)
        start = time.perf_counter()
        window_start, window_end = start + warmup_s, start + warmup_s + window_s
        stride = max(1, len(samples) // clients)

        async def loop(index: int, exchange: Exchange) -> None:
            n = index * stride
            while (t0 := time.perf_counter()) < window_end:
                digit = samples[n % len(samples)]
                n += 1
                in_flight[index] = t0
                try:
                    await exchange(digit)
                    error = None
                except AnswerError as answer:
                    error = str(answer)
                except grpc.aio.AioRpcError as failure:
                    error = f"gRPC {failure.code().name}"
                except (aiohttp.ClientError, TimeoutError, ValueError, KeyError) as failure:
                    error = type(failure).__name__
                t1 = time.perf_counter()
                in_flight[index] = None
                if error is not None:
                    errors[error] = errors.get(error, 0) + 1
                    await asyncio.sleep(ERROR_PAUSE_S)
                elif window_start <= t0 and t1 <= window_end:
                    latencies.append(t1 - t0)

        async def mark() -> None:
            await asyncio.sleep(window_start - time.perf_counter())
            probes.append(cpu_probe(pids))
            batches.append(scrape([metrics_port]) if metrics_port else {})
            await asyncio.sleep(window_end - time.perf_counter())
            now = time.perf_counter()
            longest.append(max((now - t for t in in_flight if t is not None), default=0.0))
            probes.append(cpu_probe(pids))
            batches.append(scrape([metrics_port]) if metrics_port else {})

        await asyncio.gather(mark(), *(loop(i, e) for i, e in enumerate(exchanges)))
    lat_ms = np.asarray(latencies or [0.0]) * 1000
    p50, p90, p99 = np.percentile(lat_ms, [50, 90, 99])
    row = {
        "door": door,
        "clients": clients,
        "completed": len(latencies),
        "throughput_rps": len(latencies) / window_s,
        "p50_ms": float(p50),
        "p90_ms": float(p90),
        "p99_ms": float(p99),
        "max_ms": float(lat_ms.max()),
        # A request still unanswered at the end of the window is in no percentile: a stall
        # shows here (and as a low throughput), not in p99.
        "longest_in_flight_ms": 1000 * longest[0] if longest else None,
        "errors": sum(errors.values()),
        "error_kinds": errors,
    }
    row.update(cpu_usage(probes[0], probes[1], window_s, len(latencies)))
    row["mean_batch_size"] = _mean_batch(batches[0], batches[1])
    return row


def _mean_batch(before: dict[str, float], after: dict[str, float]) -> float | None:
    """The worker's tasks per batch in the window (None without its metrics)."""
    key = "inferq_worker_batch_size"
    batches = after.get(f"{key}_count", 0.0) - before.get(f"{key}_count", 0.0)
    tasks = after.get(f"{key}_sum", 0.0) - before.get(f"{key}_sum", 0.0)
    return tasks / batches if batches else None


# --- the 1M-float tensor --------------------------------------------------------------------


def big_once(door: str, stack: DoorsStack, x: np.ndarray, channel: grpc.Channel) -> float:  # type: ignore[type-arg]
    """Seconds for one request of ``x`` through ``door``, from encoding it to the checked,
    decoded answer."""
    model, version = stack.big_ref.split("@")
    url = f"{stack.url}/v2/models/{model}/versions/{version}/infer"
    started = time.perf_counter()
    if door == "grpc_raw":
        from proto import grpc_predict_v2_pb2 as pb
        from proto import grpc_predict_v2_pb2_grpc as pb_grpc

        request = pb.ModelInferRequest(model_name=model, model_version=version)
        request.inputs.add(name="x", datatype="FP32", shape=list(x.shape))
        request.raw_input_contents.append(x.astype("<f4").tobytes())
        stub = pb_grpc.GRPCInferenceServiceStub(channel)
        answer = stub.ModelInfer(request, timeout=BIG_TIMEOUT_S)
        y = np.frombuffer(answer.raw_output_contents[0], "<f4")
    elif door == "rest_binary":
        data = x.astype("<f4").tobytes()
        header = orjson.dumps(
            {
                "inputs": [
                    {
                        "name": "x",
                        "datatype": "FP32",
                        "shape": list(x.shape),
                        "parameters": {"binary_data_size": len(data)},
                    }
                ],
                "outputs": [{"name": "y", "parameters": {"binary_data": True}}],
            }
        )
        response = httpx.post(
            url,
            content=header + data,
            headers={
                "Content-Type": "application/octet-stream",
                "Inference-Header-Content-Length": str(len(header)),
            },
            timeout=BIG_TIMEOUT_S,
        )
        if response.status_code != 200:
            raise AnswerError(f"HTTP {response.status_code}: {response.text[:200]}")
        length = int(response.headers["inference-header-content-length"])
        head = json.loads(response.content[:length])
        size = head["outputs"][0]["parameters"]["binary_data_size"]
        y = np.frombuffer(response.content[length : length + size], "<f4")
    elif door == "rest_json":
        body = orjson.dumps(
            {"inputs": [{"name": "x", "datatype": "FP32", "shape": list(x.shape), "data": x}]},
            option=orjson.OPT_SERIALIZE_NUMPY,
        )
        response = httpx.post(url, content=body, headers=JSON_HEADERS, timeout=BIG_TIMEOUT_S)
        if response.status_code != 200:
            raise AnswerError(f"HTTP {response.status_code}: {response.text[:200]}")
        y = np.asarray(orjson.loads(response.content)["outputs"][0]["data"], np.float32)
    else:  # native_json
        body = orjson.dumps({"x": x[0]}, option=orjson.OPT_SERIALIZE_NUMPY)
        response = httpx.post(
            f"{stack.url}/predict/{stack.big_ref}?wait={BIG_WAIT_S:g}",
            content=body,
            headers=JSON_HEADERS,
            timeout=BIG_TIMEOUT_S,
        )
        view = orjson.loads(response.content)
        if response.status_code != 200 or view.get("status") != "succeeded":
            raise AnswerError(f"HTTP {response.status_code}: {str(view)[:200]}")
        y = np.asarray(view["result"]["y"], np.float32)
    elapsed = time.perf_counter() - started
    if not np.array_equal(y.reshape(x.shape), 2 * x):
        raise AnswerError(f"{door}: the answer is not 2x")
    return elapsed


def run_big(stack: DoorsStack, config: DoorsConfig, say: Say) -> dict[str, Any]:
    x = np.random.default_rng(16).random((1, config.big_width), dtype=np.float32)
    times: dict[str, list[float]] = {door: [] for door in BIG_DOORS}
    errors: dict[str, str] = {}
    with grpc.insecure_channel(stack.grpc_target, options=GRPC_OPTIONS) as channel:
        for door in BIG_DOORS:  # one unmeasured call each: the worker's first run, a connection
            big_once(door, stack, x, channel)
        for n in range(config.big_repeats):
            order = BIG_DOORS if n % 2 == 0 else BIG_DOORS[::-1]
            for door in order:
                try:
                    times[door].append(big_once(door, stack, x, channel))
                except (AnswerError, grpc.RpcError, httpx.HTTPError, KeyError) as failure:
                    errors[door] = str(failure)[:300]
            say(
                f"big tensor, repeat {n + 1}: "
                + " ".join(f"{d} {times[d][-1] * 1000:.0f} ms" for d in BIG_DOORS if times[d])
            )
    medians = {d: statistics.median(t) for d, t in times.items() if t}
    json_s = medians.get("rest_json")
    return {
        "width": config.big_width,
        "bytes_fp32": 4 * config.big_width,
        "times_s": times,
        "median_s": medians,
        "over_rest_json": {d: m / json_s for d, m in medians.items()} if json_s else {},
        "errors": errors,
    }


# --- the run --------------------------------------------------------------------------------


def run_doors(config: DoorsConfig, say: Say = print) -> dict[str, Any]:
    config.out.mkdir(parents=True, exist_ok=True)
    context = Context.probe(say)
    samples = digits()
    rounds: list[dict[str, dict[str, Any]]] = []  # per round: "clients/door" -> row
    big: dict[str, Any] = {}
    with DoorsStack(config.out / "logs" / "doors", config.big_width) as stack:
        pids = {**stack.pids(), "loadgen": os.getpid(), **context.services}
        for n in range(config.rounds):
            measured: dict[str, dict[str, Any]] = {}
            for clients in config.clients:
                order = DOORS if n % 2 == 0 else DOORS[::-1]
                for door in (*order, FLOOR, HTTP_FLOOR):
                    measured[f"{clients}/{door}"] = uvloop.run(
                        run_door(
                            door,
                            stack.http_floor_url if door == HTTP_FLOOR else stack.url,
                            stack.floor_target if door == FLOOR else stack.grpc_target,
                            clients,
                            config.window_s,
                            config.warmup_s,
                            samples,
                            config.grpc_channels,
                            pids,
                            0 if door in (FLOOR, HTTP_FLOOR) else stack.metrics_port,
                        )
                    )
                base = measured[f"{clients}/native"]["throughput_rps"]
                say(
                    f"round {n + 1}, {clients} client(s): "
                    + " ".join(
                        f"{d} {measured[f'{clients}/{d}']['throughput_rps']:.0f}/s" for d in DOORS
                    )
                    + " ("
                    + " ".join(
                        f"{d}/native {measured[f'{clients}/{d}']['throughput_rps'] / base:.3f}"
                        for d in DOORS[1:]
                    )
                    + f"), gRPC floor {measured[f'{clients}/{FLOOR}']['throughput_rps']:.0f}/s"
                    + f", HTTP floor {measured[f'{clients}/{HTTP_FLOOR}']['throughput_rps']:.0f}/s"
                )
            rounds.append(measured)
        if config.big_width:
            big = run_big(stack, config, say)
    summary = summarize(rounds, config.clients)
    result = {
        **context.as_json(),
        "config": {**asdict(config), "out": str(config.out)},
        "rounds": rounds,
        "summary": summary,
        "big": big,
        "targets": targets(summary),
    }
    report.write_json(result, config.out / "doors.json")
    return result


def summarize(rounds: list[dict[str, dict[str, Any]]], client_counts: list[int]) -> dict[str, Any]:
    """Per client count: each door's medians over the rounds, and door/native per round."""
    summary: dict[str, Any] = {"errors": sum(r["errors"] for m in rounds for r in m.values())}
    for clients in client_counts:
        per: dict[str, Any] = {}
        for door in DOORS:
            rows = [m[f"{clients}/{door}"] for m in rounds]
            per[door] = {
                metric: statistics.median(r[metric] for r in rows)
                for metric in ("throughput_rps", "p50_ms", "p99_ms")
            }
            for process in ("gateway", "worker", "loadgen"):
                per[door][f"{process}_cpu_ms"] = median_cpu(rows, process)
            sizes = [r["mean_batch_size"] for r in rows if r.get("mean_batch_size") is not None]
            per[door]["mean_batch_size"] = statistics.median(sizes) if sizes else None
            served = [v for r in rows if (v := server_cpu_ms(r)) is not None]
            per[door]["server_cpu_ms"] = statistics.median(served) if served else None
        for floor, process in ((FLOOR, "floor"), (HTTP_FLOOR, HTTP_FLOOR)):
            floors = [m[f"{clients}/{floor}"] for m in rounds if f"{clients}/{floor}" in m]
            if floors:
                per[floor] = {
                    "throughput_rps": statistics.median(r["throughput_rps"] for r in floors),
                    "floor_cpu_ms": median_cpu(floors, process),
                    "loadgen_cpu_ms": median_cpu(floors, "loadgen"),
                }
        ceilings = [c for m in rounds if (c := grpc_ceiling(m, clients)) is not None]
        if ceilings:
            per["grpc_ceiling"] = {
                key: statistics.median(c[key] for c in ceilings) for key in ceilings[0]
            }
        for door in DOORS[1:]:
            ratios = [
                m[f"{clients}/{door}"]["throughput_rps"] / m[f"{clients}/native"]["throughput_rps"]
                for m in rounds
                if m[f"{clients}/native"]["throughput_rps"]
            ]
            per[door]["ratios"] = ratios
            per[door]["ratio"] = statistics.median(ratios) if ratios else None
            per[door]["ratio_range"] = [min(ratios), max(ratios)] if ratios else None
            # Native's server CPU per request over this door's: the throughput ratio a client
            # on another machine would see where the server's CPU is what runs out.
            server = [
                n / d
                for m in rounds
                if (n := server_cpu_ms(m[f"{clients}/native"]))
                and (d := server_cpu_ms(m[f"{clients}/{door}"]))
            ]
            per[door]["server_cpu_ratio"] = statistics.median(server) if server else None
        summary[str(clients)] = per
    return summary


def grpc_ceiling(measured: dict[str, dict[str, Any]], clients: int) -> dict[str, float] | None:
    """The most grpc/native can be in one round, from the two floors: the native door's CPU
    per request with its HTTP transport's cost (the HTTP floor's, server and client) traded
    for gRPC's (the gRPC floor's), all else the same. Where the host's CPU is what runs out,
    throughput falls in that ratio; ``all``: every process's CPU (the clients share the host
    here), ``server``: the serving processes' only (clients elsewhere). ``latency``: the same
    trade for the time of a request (what bounds one client, who waits for each answer):
    the native door's time per request with the HTTP floor's round trip traded for gRPC's."""
    rows = [measured.get(f"{clients}/{door}", {}) for door in ("native", FLOOR, HTTP_FLOOR)]
    native, grpc_floor, http_floor = (row.get("cpu_ms_per_request") or {} for row in rows)
    cpu_ms = [
        server_cpu_ms(rows[0]),
        native.get("loadgen"),
        grpc_floor.get("floor"),
        grpc_floor.get("loadgen"),
        http_floor.get(HTTP_FLOOR),
        http_floor.get("loadgen"),
    ]
    known = [ms for ms in cpu_ms if ms is not None]
    rates = [row.get("throughput_rps") for row in rows]
    if len(known) < len(cpu_ms) or not all(rates):
        return None
    server, client, grpc_server, grpc_client, http_server, http_client = known
    native_s, grpc_floor_s, http_floor_s = (clients / rate for rate in rates if rate)
    total = server + client
    return {
        "all": total / (total - http_server - http_client + grpc_server + grpc_client),
        "server": server / (server - http_server + grpc_server),
        "latency": native_s / (native_s - http_floor_s + grpc_floor_s),
    }


def median_cpu(rows: list[dict[str, Any]], process: str) -> float | None:
    """The median over ``rows`` of ``process``'s CPU ms per request (None: never read)."""
    known = [v for r in rows if (v := r.get("cpu_ms_per_request", {}).get(process)) is not None]
    return statistics.median(known) if known else None


def server_cpu_ms(row: dict[str, Any]) -> float | None:
    """The CPU milliseconds per request of the serving processes (not the clients')."""
    cpu = row.get("cpu_ms_per_request") or {}
    known = [v for process in SERVER_PROCESSES if (v := cpu.get(process)) is not None]
    return sum(known) if len(known) == len(SERVER_PROCESSES) else None


def targets(summary: dict[str, Any]) -> list[dict[str, Any]]:
    checks = []
    for key, per in summary.items():
        if key == "errors":
            continue
        for door in DOORS[1:]:
            ratio = per[door]["ratio"]
            checks.append(
                {
                    "door": door,
                    "clients": int(key),
                    "value": None if ratio is None else round(ratio, 3),
                    "target": f">= {MIN_RATIO[door]}",
                    "aim": f">= {AIM_RATIO[door]}",
                    "errors": summary["errors"],
                    "passed": ratio is not None
                    and ratio >= MIN_RATIO[door]
                    and not summary["errors"],
                }
            )
    return checks


def format_report(result: dict[str, Any]) -> str:
    s, c = result["summary"], result["config"]
    lines = [
        f"{len(result['rounds'])} rounds of {c['window_s']:g} s per door and client count "
        f"(native, rest, grpc, then reversed); medians over the rounds; gRPC clients share "
        f"{c['grpc_channels']} channel(s)",
        f"{'door':<8}{'clients':>8}{'req/s':>9}{'p50 ms':>9}{'p99 ms':>9}{'x native':>10}"
        f"{'range':>14}{'batch':>7}   CPU ms/request: gateway worker loadgen | server, "
        "x native",
    ]
    for clients in c["clients"]:
        per = s.get(str(clients))
        if not per or not result["rounds"]:
            continue
        for door in DOORS:
            row = per[door]
            ratio = "1" if door == "native" else report.fixed(row["ratio"])
            span = (
                ""
                if door == "native" or not row["ratio_range"]
                else "{:.3f}-{:.3f}".format(*row["ratio_range"])
            )
            cpu = " ".join(_ms(row[f"{p}_cpu_ms"]) for p in ("gateway", "worker", "loadgen"))
            served = "1" if door == "native" else report.fixed(row.get("server_cpu_ratio"))
            lines.append(
                f"{door:<8}{clients:>8}{row['throughput_rps']:>9.1f}{row['p50_ms']:>9.2f}"
                f"{row['p99_ms']:>9.2f}{ratio:>10}{span:>14}"
                f"{report.fixed(row.get('mean_batch_size')):>7}   {cpu} | "
                f"{_ms(row.get('server_cpu_ms'))}, {served}"
            )
        for name, key in (("gRPC", FLOOR), ("HTTP", HTTP_FLOOR)):
            if floor := per.get(key):
                lines.append(
                    f"  {name} floor (canned answers), {clients} client(s): "
                    f"{floor['throughput_rps']:.0f}/s, CPU ms/call: server "
                    f"{_ms(floor['floor_cpu_ms'])}, client {_ms(floor['loadgen_cpu_ms'])}"
                )
        if ceiling := per.get("grpc_ceiling"):
            lines.append(
                f"  grpc/native at most (native with HTTP's floor traded for gRPC's): "
                f"{ceiling['all']:.2f} by all CPU, {ceiling['server']:.2f} by server CPU, "
                f"{ceiling['latency']:.2f} by time per request"
            )
    stalls = [
        f"round {n + 1} {key} ({r['longest_in_flight_ms'] / 1000:.1f} s)"
        for n, m in enumerate(result["rounds"])
        for key, r in m.items()
        if (r.get("longest_in_flight_ms") or 0) > STALL_MS
    ]
    if stalls:
        lines.append(
            f"requests unanswered > {STALL_MS / 1000:g} s at a window's end: " + ", ".join(stalls)
        )
    busy = [r.get("other_busy_cores") or 0.0 for m in result["rounds"] for r in m.values()]
    if busy:
        lines.append(f"other processes' cores during the rounds: at most {max(busy):.2f}")
    lines.append(f"errors: {s['errors']}")
    if big := result["big"]:
        lines += [
            "",
            f"a tensor of {big['width']} FP32 values (doubler, y = 2x), end to end at the "
            f"client, median of {c['big_repeats']}:",
        ]
        for door in BIG_DOORS:
            if door in big["median_s"]:
                lines.append(
                    f"  {door:<12}{big['median_s'][door] * 1000:>9.1f} ms"
                    f"{big['over_rest_json'].get(door, 0):>8.3f}x OIP JSON   each: "
                    + " ".join(f"{t * 1000:.0f}" for t in big["times_s"][door])
                )
        for door, error in big["errors"].items():
            lines.append(f"  {door}: ERROR {error}")
    return "\n".join(lines)


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def format_targets(checks: list[dict[str, Any]]) -> str:
    return "\n".join(
        f"{'PASS' if c['passed'] else 'FAIL'}  {c['door']}/native throughput, {c['clients']} "
        f"client(s): {report.fixed(c['value'])} (target {c['target']}, aim {c['aim']}"
        f"{', errors!' if c['errors'] else ''})"
        for c in checks
    )
