"""A TCP proxy that puts network faults between an inferq process and RabbitMQ or Redis.

Point a process's ``INFERQ_AMQP_URL`` or ``INFERQ_REDIS_URL`` at the proxy (see `via`), then:

- `cut()` drops every live connection at once (the peer sees a reset), new ones are let in:
  a flapping link, a broker or Redis failover;
- `block()` drops every live connection and refuses new ones (accepted, then dropped at
  once): the server is down;
- `freeze()` keeps every connection open but forwards nothing, new ones included: a network
  partition, where nothing fails fast and only timeouts and heartbeats notice;
- `restore()` lets everything through again (bytes held by a freeze are then delivered).

It runs an asyncio loop in a thread of its own, so tests drive it from plain synchronous code.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Coroutine
from typing import Any
from urllib.parse import urlsplit, urlunsplit

BUFFER = 65_536


class TcpProxy:
    """Forwards 127.0.0.1:`port` to ``upstream_host:upstream_port``."""

    def __init__(self, upstream_port: int, upstream_host: str = "127.0.0.1") -> None:
        self.upstream = (upstream_host, upstream_port)
        self.port = 0
        self.accepted = 0  # connections forwarded since start, cut ones included
        self.refused = 0  # connections dropped because the proxy was blocked
        self._blocked = False
        self._links: set[tuple[asyncio.StreamWriter, asyncio.StreamWriter]] = set()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name=f"proxy->{upstream_port}", daemon=True
        )
        self._server: asyncio.Server | None = None
        self._flowing: asyncio.Event | None = None

    # --- control, from the test's thread --------------------------------------------------
    def start(self) -> TcpProxy:
        self._thread.start()
        self._call(self._listen())
        return self

    def close(self) -> None:
        if not self._thread.is_alive():
            return
        self._call(self._shutdown())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)
        self._loop.close()

    def cut(self) -> int:
        """Drop every live connection; returns how many were dropped."""
        return self._call(self._cut())

    def block(self) -> None:
        """Drop every live connection and every new one, until `restore()`."""
        self._call(self._block())

    def freeze(self) -> None:
        """Keep connections open but forward nothing, until `restore()`."""
        self._call(self._set(blocked=False, flowing=False))

    def restore(self) -> None:
        self._call(self._set(blocked=False, flowing=True))

    @property
    def live(self) -> int:
        """Connections open through the proxy now."""
        return len(self._links)

    def url(self, url: str) -> str:
        """``url`` with its host and port replaced by the proxy's."""
        return via(url, self.port)

    # --- the proxy, on its own loop -------------------------------------------------------
    def _call(self, coroutine: Coroutine[Any, Any, Any]) -> Any:
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(10)

    async def _listen(self) -> None:
        self._flowing = asyncio.Event()
        self._flowing.set()
        self._server = await asyncio.start_server(self._on_client, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def _shutdown(self) -> None:
        assert self._server is not None
        self._server.close()
        await self._cut()

    async def _set(self, blocked: bool, flowing: bool) -> None:
        assert self._flowing is not None
        self._blocked = blocked
        if flowing:
            self._flowing.set()
        else:
            self._flowing.clear()

    async def _block(self) -> None:
        assert self._flowing is not None
        self._blocked = True
        await self._cut()  # before letting held bytes go: none of them may get through
        self._flowing.set()

    async def _cut(self) -> int:
        links = list(self._links)
        self._links.clear()
        for client, server in links:
            client.transport.abort()
            server.transport.abort()
        return len(links)

    async def _on_client(
        self, client_in: asyncio.StreamReader, client: asyncio.StreamWriter
    ) -> None:
        if self._blocked:
            self.refused += 1
            client.transport.abort()
            return
        try:
            server_in, server = await asyncio.open_connection(*self.upstream)
        except OSError:
            client.transport.abort()
            return
        if self._blocked:  # blocked while we were connecting
            client.transport.abort()
            server.transport.abort()
            return
        link = (client, server)
        self._links.add(link)
        self.accepted += 1
        try:
            await asyncio.gather(self._pump(client_in, server), self._pump(server_in, client))
        finally:
            self._links.discard(link)

    async def _pump(self, source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
        assert self._flowing is not None
        try:
            while data := await source.read(BUFFER):
                await self._flowing.wait()
                sink.write(data)
                await sink.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            # Either side closing ends the link: AMQP and Redis never half-close.
            with contextlib.suppress(ConnectionError, OSError, RuntimeError):
                sink.close()


def via(url: str, port: int) -> str:
    """``url`` pointed at 127.0.0.1:``port``, keeping credentials, path and query."""
    parts = urlsplit(url)
    credentials = parts.netloc.rpartition("@")[0]
    netloc = f"{credentials}@127.0.0.1:{port}" if credentials else f"127.0.0.1:{port}"
    return urlunsplit(parts._replace(netloc=netloc))


def port_of(url: str) -> int:
    parts = urlsplit(url)
    return parts.port or {"amqp": 5672, "redis": 6379}[parts.scheme]
