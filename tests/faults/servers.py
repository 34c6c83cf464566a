"""Private Redis and RabbitMQ servers, for the tests that stop and restart them.

The machine's own RabbitMQ and Redis are shared with other test runs: no test may stop them.
A restart test runs its own server on free ports, with its data, logs and Erlang cookie
under the test's temporary directory, and stops it at the end.
"""

from __future__ import annotations

import os
import secrets
import shutil
import socket
import subprocess
import time
from pathlib import Path

import redis

from tests.stack import free_port

RABBIT_BIN = Path("/usr/lib/rabbitmq/bin")  # the Debian package's scripts, without the su wrapper
# rabbitmqctl listens for Erlang distribution on one of these; a node must not take them.
CLI_DIST_PORTS = range(35672, 35683)


def redis_server_available() -> bool:
    return shutil.which("redis-server") is not None


def rabbitmq_server_available() -> bool:
    return (RABBIT_BIN / "rabbitmq-server").exists() and (RABBIT_BIN / "rabbitmqctl").exists()


class RedisServer:
    """``redis-server`` on a free port, started and stopped at will; the port stays the same."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        log = open(self.workdir / "redis.log", "ab")  # noqa: SIM115 - the child writes to it
        self.process = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1",
             "--save", "", "--appendonly", "no", "--dir", str(self.workdir),
             "--daemonize", "no"],
            stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
        deadline = time.monotonic() + 10
        while not self._ping():
            if time.monotonic() > deadline or self.process.poll() is not None:
                raise RuntimeError(f"redis-server on :{self.port} did not start")
            time.sleep(0.05)

    def stop(self, keep_data: bool = True) -> None:
        """Stop it; with ``keep_data`` it saves a snapshot first and reloads it on `start()`,
        as a production Redis with persistence does; without, it comes back empty."""
        if self.process is None or self.process.poll() is not None:
            return
        client = redis.Redis(port=self.port, socket_timeout=5)
        try:
            client.shutdown(save=keep_data, nosave=not keep_data)
        except redis.ConnectionError:
            pass
        finally:
            client.close()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def _ping(self) -> bool:
        try:
            with redis.Redis(port=self.port, socket_timeout=1) as client:
                return bool(client.ping())
        except redis.RedisError:
            return False


class RabbitNode:
    """A RabbitMQ node of the test's own: no plugins, loopback only, data under ``workdir``."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.name = f"inferq-test-{secrets.token_hex(3)}@localhost"
        self.port = _node_port()
        self.url = f"amqp://guest:guest@127.0.0.1:{self.port}/"
        self.process: subprocess.Popen[bytes] | None = None
        (workdir / "rabbitmq.conf").write_text(
            "disk_free_limit.absolute = 10MB\nlog.file.level = info\n"
        )
        (workdir / "enabled_plugins").write_text("[].\n")
        (workdir / "rabbitmq-env.conf").write_text("")
        cookie = workdir / ".erlang.cookie"
        cookie.write_text(secrets.token_hex(16).upper())
        cookie.chmod(0o400)
        self.env = {
            **os.environ,
            "HOME": str(workdir),  # the Erlang cookie the node and rabbitmqctl share
            "RABBITMQ_NODENAME": self.name,
            "RABBITMQ_NODE_IP_ADDRESS": "127.0.0.1",
            "RABBITMQ_NODE_PORT": str(self.port),
            "RABBITMQ_DIST_PORT": str(_node_port()),
            "RABBITMQ_MNESIA_BASE": str(workdir / "mnesia"),
            "RABBITMQ_LOG_BASE": str(workdir / "log"),
            "RABBITMQ_CONFIG_FILE": str(workdir / "rabbitmq"),
            "RABBITMQ_ADVANCED_CONFIG_FILE": str(workdir / "advanced.config"),
            "RABBITMQ_CONF_ENV_FILE": str(workdir / "rabbitmq-env.conf"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(workdir / "enabled_plugins"),
            "RABBITMQ_PID_FILE": str(workdir / "rabbitmq.pid"),
            "RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS": "-kernel inet_dist_use_interface {127,0,0,1}",
        }

    def start(self, timeout: float = 60) -> float:
        """Boot the node; returns how long it took."""
        started = time.monotonic()
        log = open(self.workdir / "rabbitmq-server.log", "ab")  # noqa: SIM115
        self.process = subprocess.Popen(
            [str(RABBIT_BIN / "rabbitmq-server")],
            cwd=self.workdir,
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        # await_startup fails at once while the node has not registered with epmd yet.
        while self.ctl("await_startup", "--timeout", "30", check=False).returncode != 0:
            if self.process.poll() is not None or time.monotonic() - started > timeout:
                raise RuntimeError(f"RabbitMQ node {self.name} did not start:\n{self.log()}")
            time.sleep(0.3)
        return time.monotonic() - started

    def stop_app(self) -> None:
        """Stop RabbitMQ inside the node (connections drop, port closes); data is kept."""
        self.ctl("stop_app")

    def start_app(self) -> None:
        self.ctl("start_app")
        self.ctl("await_startup", "--timeout", "30")

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.ctl("stop", check=False)
        try:
            self.process.wait(30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def ctl(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(RABBIT_BIN / "rabbitmqctl"), "-n", self.name, "-q", *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=90,
            check=check,
        )

    def log(self) -> str:
        path = self.workdir / "rabbitmq-server.log"
        return path.read_text(errors="replace")[-3000:] if path.exists() else ""


def _node_port() -> int:
    """A free port outside the range rabbitmqctl itself listens on."""
    while True:
        port = free_port()
        if port not in CLI_DIST_PORTS and port + 1 not in CLI_DIST_PORTS:
            return port


def port_is_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0
