"""Connecting to RabbitMQ: a robust connection (aio-pika restores channels, queues and
consumers after a broker restart), first opened with retries so a process may start before
the broker does.

Several URLs (the nodes of a cluster, `CommonSettings.amqp_urls`): the first connection
goes to one of them, starting from a random one so that processes spread over the nodes,
and every later attempt, after the connection is lost or an attempt failed, to the next one
in the list. aio-pika's `RobustConnection` reconnects to its own URL only; `NodesConnection`
moves it on. One URL: aio-pika's own `RobustConnection`, unchanged.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Sequence
from typing import Any

import aio_pika
from aio_pika.abc import AbstractConnection, AbstractRobustConnection
from aio_pika.exceptions import CONNECTION_EXCEPTIONS
from pamqp.common import FieldTable
from yarl import URL

logger = logging.getLogger(__name__)

RETRY_DELAYS_S = (0.5, 1.0, 2.0, 5.0)
# Between two attempts of a connection that was lost (aio-pika's default is 5 s): with
# several nodes, a failed attempt is followed by one at the next node.
NODES_RECONNECT_INTERVAL_S = 1.0


class NodesConnection(aio_pika.RobustConnection):
    """A robust connection over several nodes: whenever its connection closes, or an attempt
    to open it fails, its URL becomes the next node's, so aio-pika's reconnect loop (which
    reopens ``self.url``, restoring channels and consumers) goes round the nodes.

    aio-pika calls `_on_connection_close` both when an open connection is lost and when an
    attempt fails (``UnderlayConnection.connect``); only the URL changes here. The options in
    the URLs' queries are read by aiormq from each URL (heartbeat, name, TLS); aio-pika's own
    (reconnect_interval, fail_fast) from the first one.
    """

    def __init__(self, url: URL, *, nodes: Sequence[str], **kwargs: Any) -> None:
        super().__init__(url, **kwargs)
        self.nodes = [URL(node) for node in nodes]
        self._node = self.nodes.index(URL(url)) if URL(url) in self.nodes else 0

    def next_node(self) -> None:
        self._node = (self._node + 1) % len(self.nodes)
        self.url = self.nodes[self._node]

    async def _on_connection_close(self, closing: asyncio.Future[Any]) -> None:
        await super()._on_connection_close(closing)  # it logs the node that closed
        if not (self._close_called or self.is_closed):
            # Before aio-pika's reconnect loop runs again: nothing awaited since it was woken.
            self.next_node()
            logger.info("broker connection: trying node %s next", self)


async def connect_with_retry(
    urls: str | Sequence[str], name: str, *, first: int | None = None
) -> AbstractRobustConnection:
    """A robust connection to one of ``urls`` (a URL, or the nodes of a cluster), retried
    until one answers. ``first``: the node to try first (default: a random one)."""
    nodes = [urls] if isinstance(urls, str) else list(urls)
    node = random.randrange(len(nodes)) if first is None else first % len(nodes)
    attempt = 0
    while True:
        try:
            return await _connect(nodes, node, name)
        except (*CONNECTION_EXCEPTIONS, TimeoutError) as error:
            delay = RETRY_DELAYS_S[min(attempt, len(RETRY_DELAYS_S) - 1)]
            attempt += 1
            node = (node + 1) % len(nodes)
            if attempt % len(nodes) == 0:  # each node tried once more: wait
                logger.warning("broker unreachable (%r); retrying in %.1fs", error, delay)
                await asyncio.sleep(delay)
            else:
                logger.warning("broker node unreachable (%r); trying the next", error)


async def _connect(nodes: list[str], node: int, name: str) -> AbstractRobustConnection:
    properties: FieldTable = {"connection_name": name}
    if len(nodes) == 1:
        return await aio_pika.connect_robust(nodes[0], client_properties=properties, timeout=10)
    connection = NodesConnection(
        URL(nodes[node]),
        nodes=nodes,
        client_properties=properties,
        reconnect_interval=NODES_RECONNECT_INTERVAL_S,
    )
    await connection.connect(timeout=10)
    return connection


async def connect_once(urls: str | Sequence[str], timeout_s: float = 10) -> AbstractConnection:
    """A plain (not robust) connection to the first of ``urls`` that answers, for a short
    job (`inferq_cli.admin`); raises the last node's error when none does."""
    nodes = [urls] if isinstance(urls, str) else list(urls)
    for index, url in enumerate(nodes):
        try:
            return await aio_pika.connect(url, timeout=timeout_s)
        except (*CONNECTION_EXCEPTIONS, TimeoutError):
            if index == len(nodes) - 1:
                raise
    raise ValueError("no AMQP URL")
