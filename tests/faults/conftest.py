"""Fixtures of the fault tests: TCP proxies to cut, block or freeze a process's link to
RabbitMQ or Redis, and private Redis and RabbitMQ servers to restart (the machine's own are
shared with other runs and are never stopped)."""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import NoReturn

import pytest

from tests.faults.proxy import TcpProxy, port_of
from tests.faults.servers import (
    RABBITMQ_BIN_ENV,
    REDIS_SERVER_ENV,
    RabbitNode,
    RedisServer,
    find_rabbitmq_bin,
    find_redis_server,
    not_found,
)
from tests.stack import Stack

MakeProxy = Callable[[str], TcpProxy]
CONTRACT_5 = (
    "reliability contract item 5 (workers and gateway reconnect after a broker or Redis restart)"
)


class ContractTestNotRun(UserWarning):
    """A contract test was skipped: its server is not installed."""


def server_missing(
    request: pytest.FixtureRequest, server: str, variable: str, promise: str = CONTRACT_5
) -> NoReturn:
    """Skip a restart test whose server is not installed, saying loudly which promise went
    untested and what to install; fail it instead on CI (CI=true), where a skip passes
    unseen, or where the environment variable names a server that is not there (a typo)."""
    reason = f"{request.node.nodeid} did NOT run, so {promise} went untested: {not_found(server)}"
    if os.environ.get("CI", "").lower() in ("1", "true", "yes") or os.environ.get(variable):
        pytest.fail(reason, pytrace=False)
    warnings.warn(reason, ContractTestNotRun, stacklevel=2)  # shown without -rs, too
    pytest.skip(reason)


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
def private_redis(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[RedisServer]:
    program = find_redis_server()
    if program is None:
        server_missing(request, "redis", REDIS_SERVER_ENV)
    (tmp_path / "redis").mkdir()
    server = RedisServer(tmp_path / "redis", program)
    server.start()
    yield server
    server.stop(keep_data=False)


@pytest.fixture
def private_rabbit(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[RabbitNode]:
    bin_dir = find_rabbitmq_bin()
    if bin_dir is None:
        server_missing(request, "rabbitmq", RABBITMQ_BIN_ENV)
    (tmp_path / "rabbitmq").mkdir()
    node = RabbitNode(tmp_path / "rabbitmq", bin_dir)
    node.start()
    yield node
    node.stop()
