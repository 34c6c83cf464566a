"""Fixtures of the fault tests: TCP proxies to cut, block or freeze a process's link to
RabbitMQ or Redis, and private Redis and RabbitMQ servers to restart (the machine's own are
shared with other runs and are never stopped)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.faults.proxy import TcpProxy, port_of
from tests.faults.servers import (
    RabbitNode,
    RedisServer,
    rabbitmq_server_available,
    redis_server_available,
)
from tests.stack import Stack

MakeProxy = Callable[[str], TcpProxy]


@pytest.fixture
def proxies() -> Iterator[list[TcpProxy]]:
    made: list[TcpProxy] = []
    yield made
    for proxy in made:
        proxy.close()


@pytest.fixture
def make_proxy(proxies: list[TcpProxy]) -> MakeProxy:
    """``make_proxy(url)``: a started proxy to the server of ``url``; ``proxy.url(url)`` is
    the address to give the process instead."""

    def make(url: str) -> TcpProxy:
        proxy = TcpProxy(port_of(url)).start()
        proxies.append(proxy)
        return proxy

    return make


@pytest.fixture
def stack(proxies: list[TcpProxy], stack: Stack) -> Iterator[Stack]:
    """The suite's `stack`, torn down while the proxies still forward: every proxy is
    restored first, so the processes stop cleanly instead of timing out on a dead link."""
    yield stack
    for proxy in proxies:
        proxy.restore()


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[RedisServer]:
    if not redis_server_available():
        pytest.skip("redis-server is not installed")
    (tmp_path / "redis").mkdir()
    server = RedisServer(tmp_path / "redis")
    server.start()
    yield server
    server.stop(keep_data=False)


@pytest.fixture
def private_rabbit(tmp_path: Path) -> Iterator[RabbitNode]:
    if not rabbitmq_server_available():
        pytest.skip("rabbitmq-server is not installed")
    (tmp_path / "rabbitmq").mkdir()
    node = RabbitNode(tmp_path / "rabbitmq")
    node.start()
    yield node
    node.stop()
