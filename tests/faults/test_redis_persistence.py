"""The Redis that `make up` starts keeps what it holds across a restart (append-only file),
and inferq warns when the Redis it uses keeps nothing on disk. Each test runs a Redis of its
own on a free port: the machine's shared one is never stopped."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
import redis
import redis.asyncio

from inferq.redis_client import warn_if_not_persistent
from tests.faults.conftest import server_missing
from tests.faults.servers import REDIS_SERVER_ENV, RedisServer, find_redis_server
from tests.stack import ROOT, free_port

WARNING = "keeps nothing on disk"
PROMISE = "the promise that the Redis `make up` starts keeps task records across a restart"


@pytest.fixture
def redis_server(request: pytest.FixtureRequest) -> Path:
    program = find_redis_server()
    if program is None:
        server_missing(request, "redis", REDIS_SERVER_ENV, PROMISE)
    return program


def ensure_services(
    redis_url: str, data_dir: Path, program: Path
) -> subprocess.CompletedProcess[str]:
    """`make up`'s first step, pointed at a Redis port of this test's own."""
    env = {
        **os.environ,
        "PATH": f"{program.parent}{os.pathsep}{os.environ.get('PATH', '')}",
        "INFERQ_REDIS_URL": redis_url,
        "INFERQ_REDIS_DIR": str(data_dir),
        "INFERQ_NO_INSTALL": "1",  # a test installs nothing
    }
    return subprocess.run(
        ["bash", str(ROOT / "scripts" / "ensure_services.sh")],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )


def test_the_redis_make_up_starts_keeps_task_records_across_a_crash(
    tmp_path: Path, redis_server: Path
) -> None:
    port = free_port()
    url = f"redis://127.0.0.1:{port}/0"
    started = ensure_services(url, tmp_path, redis_server)
    assert f"starting Redis on 127.0.0.1:{port}" in started.stdout, started.stdout
    client = redis.Redis(port=port, socket_timeout=5)
    try:
        assert client.config_get("appendonly") == {"appendonly": "yes"}
        client.set("inferq-test:task", "succeeded")
        time.sleep(1.5)  # appendfsync everysec: on disk within a second
        os.kill(int(client.info("server")["process_id"]), signal.SIGKILL)
        client.close()

        again = ensure_services(url, tmp_path, redis_server)
        assert f"starting Redis on 127.0.0.1:{port}" in again.stdout, again.stdout
        assert client.get("inferq-test:task") == b"succeeded"
        assert WARNING not in again.stderr
    finally:
        try:
            client.shutdown(nosave=True)
        except redis.RedisError:
            pass  # shutting down closes the connection under us
        client.close()


def test_a_redis_that_keeps_nothing_on_disk_is_warned_about(
    tmp_path: Path, redis_server: Path, caplog: pytest.LogCaptureFixture
) -> None:
    server = RedisServer(tmp_path, redis_server)  # started with --save "" --appendonly no
    server.start()
    try:
        reused = ensure_services(server.url, tmp_path, redis_server)
        assert "reusing it" in reused.stdout
        assert WARNING in reused.stderr

        async def check() -> None:
            client = redis.asyncio.Redis.from_url(server.url)
            try:
                with caplog.at_level(logging.WARNING, logger="inferq.redis_client"):
                    await warn_if_not_persistent(client)
                assert WARNING in caplog.text
                caplog.clear()
                await client.config_set("appendonly", "yes")
                await warn_if_not_persistent(client)
                assert WARNING not in caplog.text
            finally:
                await client.aclose()

        asyncio.run(check())
    finally:
        assert server.process is not None
        server.process.kill()  # its AOF rewrite, just started, would refuse a SHUTDOWN
        server.process.wait()
