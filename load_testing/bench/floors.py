"""``python -m load_testing.bench floors``: what the parts of inferq's path cost on this machine,
each alone, to read the end-to-end figures against: ``loopback`` (a round trip between two
Python processes), ``rabbitmq`` (publish until consumed: persistent with a confirm, transient,
no confirm; the broker's CPU per message), ``redis`` (PUBLISH until heard; PING) and ``wake``
(model_b's inference back to back and after 0.5, 2, 5 ms idle). Writes floors.json, in a
namespace of its own; leaves nothing behind.
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
import os
import statistics
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aio_pika
import uvloop
from redis.asyncio import Redis

from inferq.names import Names
from inferq.settings import CommonSettings
from inferq.topology import model_queue_arguments
from load_testing.bench import procstat, report
from load_testing.bench.baseline import classify
from load_testing.processes import free_port
from load_testing.samples import Digits
from workers.models.model_b import WEIGHTS, onnx_session

ROUNDS = 2000
WARMUP = 200
IDLE_GAPS_MS = (0.0, 0.5, 2.0, 5.0)
MESSAGE = b"x" * 600  # about one model_b task envelope


@dataclass
class FloorsConfig:
    out: Path = Path("load_testing/results/bench")
    rounds: int = ROUNDS
    namespace: str = field(default_factory=lambda: f"floors-{os.urandom(4).hex()}")


@dataclass
class Floor:
    part: str
    what: str
    p50_ms: float
    p90_ms: float
    extra: dict[str, Any] = field(default_factory=dict)


def run_floors(config: FloorsConfig, say: Callable[[str], None] = print) -> dict[str, Any]:
    settings = CommonSettings(namespace=config.namespace)
    floors: list[Floor] = []
    measures: tuple[tuple[str, Callable[[CommonSettings, int], Any]], ...] = (
        ("loopback", _loopback),
        ("rabbitmq", _rabbitmq),
        ("redis", _redis),
        ("wake", _wake),
    )
    for name, measure in measures:
        say(f"floors: {name}")
        measured = measure(settings, config.rounds)
        floors += measured if isinstance(measured, list) else uvloop.run(measured)
    result = {
        "machine": procstat.machine_info(),
        "rounds": config.rounds,
        "floors": [floor.__dict__ for floor in floors],
    }
    config.out.mkdir(parents=True, exist_ok=True)
    report.write_json(result, config.out / "floors.json")
    return result


def format_table(result: dict[str, Any]) -> str:
    lines = [f"{'part':9} {'what':58} {'p50 ms':>7} {'p90 ms':>7}  other", "-" * 100]
    for floor in result["floors"]:
        extra = " ".join(f"{k} {v}" for k, v in floor["extra"].items())
        lines.append(
            f"{floor['part']:9} {floor['what']:58} {floor['p50_ms']:7.3f} {floor['p90_ms']:7.3f}"
            f"  {extra}"
        )
    return "\n".join(lines)


async def _timed(rounds: int, once: Callable[[], Awaitable[object]]) -> tuple[float, float]:
    """p50 and p90 of ``once`` in ms, after ``WARMUP`` unmeasured calls."""
    took = []
    for i in range(WARMUP + rounds):
        started = time.perf_counter()
        await once()
        if i >= WARMUP:
            took.append(time.perf_counter() - started)
    return _percentiles(took)


def _percentiles(took: list[float]) -> tuple[float, float]:
    took.sort()
    return 1000 * statistics.median(took), 1000 * took[int(0.9 * (len(took) - 1))]


# --- loopback --------------------------------------------------------------------------------
def _echo_server(port: int, ready: Any) -> None:
    async def serve() -> None:
        async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            while data := await reader.read(65536):
                writer.write(data)

        server = await asyncio.start_server(echo, "127.0.0.1", port)
        ready.set()
        async with server:
            await server.serve_forever()

    uvloop.run(serve())


async def _loopback(_: CommonSettings, rounds: int) -> list[Floor]:
    port = free_port()
    spawn = multiprocessing.get_context("spawn")
    ready = spawn.Event()
    server = spawn.Process(target=_echo_server, args=(port, ready), daemon=True)
    server.start()
    try:
        ready.wait(30)
        reader, writer = await asyncio.open_connection("127.0.0.1", port)

        async def once() -> None:
            writer.write(MESSAGE)
            got = 0
            while got < len(MESSAGE):
                got += len(await reader.read(65536))

        p50, p90 = await _timed(rounds, once)
        writer.close()
    finally:
        server.terminate()
        server.join(10)
    return [Floor("loopback", "round trip to another Python process (TCP, uvloop)", p50, p90)]


# --- RabbitMQ --------------------------------------------------------------------------------
RABBITMQ_LEGS = (
    ("persistent message, confirm: publish until consumed", True, True),
    ("transient message, confirm", False, True),
    ("persistent message, no confirm", True, False),
)


async def _rabbitmq(settings: CommonSettings, rounds: int) -> list[Floor]:
    url = urlsplit(settings.amqp_url)
    broker_pid = procstat.listening_pid(url.port or 5672)
    names = Names(settings.namespace)
    connection = await aio_pika.connect(settings.amqp_url)
    async with connection:
        channel = await connection.channel()
        arguments = model_queue_arguments(names, 100_000, 5, "classic")
        arguments.pop("x-dead-letter-exchange")  # nothing here expires
        # Durable and not exclusive, as a model's queue: the broker treats an exclusive
        # queue's persistent messages as transient.
        queue = await channel.declare_queue(
            names.model_queue("floors"), durable=True, arguments=arguments
        )
        try:
            return [
                await _rabbitmq_leg(
                    connection, queue, what, persistent, confirms, rounds, broker_pid
                )
                for what, persistent, confirms in RABBITMQ_LEGS
            ]
        finally:
            await queue.delete(if_unused=False, if_empty=False)


async def _rabbitmq_leg(
    connection: aio_pika.abc.AbstractConnection,
    queue: aio_pika.abc.AbstractQueue,
    what: str,
    persistent: bool,
    confirms: bool,
    rounds: int,
    broker_pid: int | None,
) -> Floor:
    arrived: asyncio.Future[None] | None = None

    async def on_message(message: aio_pika.abc.AbstractIncomingMessage) -> None:
        await message.ack()
        if arrived is not None and not arrived.done():
            arrived.set_result(None)

    consumer_tag = await queue.consume(on_message)
    publishing = await connection.channel(publisher_confirms=confirms)
    mode = aio_pika.DeliveryMode.PERSISTENT if persistent else aio_pika.DeliveryMode.NOT_PERSISTENT
    confirming: set[asyncio.Task[Any]] = set()

    async def once() -> None:
        nonlocal arrived
        arrived = asyncio.get_running_loop().create_future()
        message = aio_pika.Message(MESSAGE, delivery_mode=mode)
        # As in the gateway, the confirm comes on its own time; the leg ends at the consumer.
        publish = asyncio.create_task(
            publishing.default_exchange.publish(message, routing_key=queue.name)
        )
        confirming.add(publish)
        publish.add_done_callback(confirming.discard)
        await arrived

    cpu_before = _cpu(broker_pid)
    p50, p90 = await _timed(rounds, once)
    await asyncio.gather(*confirming)
    cpu_after = _cpu(broker_pid)
    await queue.cancel(consumer_tag)
    await publishing.close()
    extra = {}
    if cpu_before is not None and cpu_after is not None:
        per_message = 1000 * (cpu_after - cpu_before) / (WARMUP + rounds)
        extra["broker_cpu_ms_per_message"] = round(per_message, 3)
    return Floor("rabbitmq", what, p50, p90, extra)


def _cpu(pid: int | None) -> float | None:
    return procstat.cpu_s(pid) if pid is not None else None


# --- Redis -----------------------------------------------------------------------------------
async def _redis(settings: CommonSettings, rounds: int) -> list[Floor]:
    redis = Redis.from_url(settings.redis_url)
    channel = Names(settings.namespace).task_done_channel
    try:
        async with redis.pubsub() as pubsub:
            await pubsub.subscribe(channel)
            await pubsub.get_message(timeout=5)  # the subscribe confirmation

            async def publish_and_hear() -> None:
                await redis.publish(channel, MESSAGE)
                while await pubsub.get_message(ignore_subscribe_messages=True, timeout=5) is None:
                    pass

            p50, p90 = await _timed(rounds, publish_and_hear)
            published = Floor("redis", "PUBLISH until a subscriber has it", p50, p90)
        p50, p90 = await _timed(rounds, redis.ping)
        return [published, Floor("redis", "PING round trip", p50, p90)]
    finally:
        await redis.aclose()


# --- waking from idle ------------------------------------------------------------------------
def _wake(_: CommonSettings, rounds: int) -> list[Floor]:
    session = onnx_session(WEIGHTS)
    pixels = Digits().pixels[0]

    floors = []
    for gap_ms in IDLE_GAPS_MS:
        took: list[float] = []
        for i in range(WARMUP + rounds // 2):
            if gap_ms:
                time.sleep(gap_ms / 1000)  # the process sleeps, as a worker between tasks
            with _stopwatch(took if i >= WARMUP else []):
                classify(session, pixels)  # the baseline's own inference
        p50, p90 = _percentiles(took)
        what = "model_b inference, back to back" if not gap_ms else f"after {gap_ms:g} ms idle"
        floors.append(Floor("wake", what, p50, p90))
    return floors


@contextlib.contextmanager
def _stopwatch(into: list[float]) -> Iterator[None]:
    started = time.perf_counter()
    yield
    into.append(time.perf_counter() - started)
