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

from load_testing.processes import free_port

# Where the servers are looked for: first (and then only) where these variables point; else
# PATH and where the packages put them. Debian's RabbitMQ package keeps the real scripts in
# /usr/lib/rabbitmq/bin; its /usr/sbin ones are a wrapper that switches to the rabbitmq user
# and the system's own node, so that directory comes first and the wrapper is never used.
REDIS_SERVER_ENV = "INFERQ_TEST_REDIS_SERVER"  # the redis-server program
RABBITMQ_BIN_ENV = "INFERQ_TEST_RABBITMQ_BIN"  # the directory of rabbitmq-server and rabbitmqctl
REDIS_DIRS = ("/usr/local/bin", "/usr/bin", "/usr/local/sbin", "/usr/sbin", "/opt/homebrew/bin",
              "/opt/homebrew/opt/redis/bin", "/usr/local/opt/redis/bin")  # fmt: skip
RABBITMQ_DIRS = ("/usr/local/sbin", "/usr/sbin", "/opt/homebrew/sbin",
                 "/opt/homebrew/opt/rabbitmq/sbin", "/usr/local/opt/rabbitmq/sbin")  # fmt: skip
RABBITMQ_PACKAGE_BIN = "/usr/lib/rabbitmq/bin"
INSTALL = {
    "redis": "apt-get install redis-server (Debian, Ubuntu), dnf install redis (Fedora), "
    f"brew install redis (macOS), or set {REDIS_SERVER_ENV} to the redis-server program",
    "rabbitmq": "apt-get install rabbitmq-server (Debian, Ubuntu), dnf install rabbitmq-server "
    f"(Fedora), brew install rabbitmq (macOS), or set {RABBITMQ_BIN_ENV} to the directory "
    "holding rabbitmq-server and rabbitmqctl",
}
# rabbitmqctl listens for Erlang distribution on one of these; a node must not take them.
CLI_DIST_PORTS = range(35672, 35683)


def find_redis_server() -> Path | None:
    """The redis-server program to run, or None."""
    if named := os.environ.get(REDIS_SERVER_ENV):
        return _executable(Path(named))
    if on_path := shutil.which("redis-server"):
        return Path(on_path)
    return next(filter(None, (_executable(Path(d, "redis-server")) for d in REDIS_DIRS)), None)


def find_rabbitmq_bin() -> Path | None:
    """The directory of the rabbitmq-server and rabbitmqctl scripts to run, or None."""
    if named := os.environ.get(RABBITMQ_BIN_ENV):
        candidates = [named]
    else:
        path = os.environ.get("PATH", "").split(os.pathsep)
        candidates = [RABBITMQ_PACKAGE_BIN, *path, *RABBITMQ_DIRS]
    return next((Path(d) for d in candidates if d and _rabbitmq_scripts(Path(d))), None)


def redis_server_available() -> bool:
    return find_redis_server() is not None


def rabbitmq_server_available() -> bool:
    return find_rabbitmq_bin() is not None


def not_found(server: str) -> str:
    """Why ``server`` ("redis" or "rabbitmq") was not found, and what to install."""
    variable = {"redis": REDIS_SERVER_ENV, "rabbitmq": RABBITMQ_BIN_ENV}[server]
    programs = {"redis": "redis-server", "rabbitmq": "rabbitmq-server and rabbitmqctl"}[server]
    if (named := os.environ.get(variable)) and server == "redis":
        return f"{variable}={named} is not an executable redis-server"
    if named:
        return f"{variable}={named} does not hold {programs} (Debian's su wrappers do not count)"
    places = [RABBITMQ_PACKAGE_BIN] if server == "rabbitmq" else []
    places += ["PATH", *(REDIS_DIRS if server == "redis" else RABBITMQ_DIRS)]
    return f"no {programs} in {', '.join(places)}; install: {INSTALL[server]}"


def _executable(path: Path) -> Path | None:
    return path if path.is_file() and os.access(path, os.X_OK) else None


def _rabbitmq_scripts(directory: Path) -> bool:
    server, ctl = directory / "rabbitmq-server", directory / "rabbitmqctl"
    wrapper = server.resolve().name == "rabbitmq-script-wrapper"  # Debian's su wrapper
    return bool(_executable(server) and _executable(ctl)) and not wrapper


class RedisServer:
    """``redis-server`` on a free port, started and stopped at will; the port stays the same."""

    def __init__(self, workdir: Path, program: Path | None = None) -> None:
        found = program or find_redis_server()
        if found is None:
            raise RuntimeError(not_found("redis"))
        self.program = found
        self.workdir = workdir
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        log = open(self.workdir / "redis.log", "ab")  # noqa: SIM115 - the child writes to it
        self.process = subprocess.Popen(
            [str(self.program), "--port", str(self.port), "--bind", "127.0.0.1",
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

    def __init__(self, workdir: Path, bin_dir: Path | None = None) -> None:
        found = bin_dir or find_rabbitmq_bin()
        if found is None:
            raise RuntimeError(not_found("rabbitmq"))
        self.bin_dir = found
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
            [str(self.bin_dir / "rabbitmq-server")],
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
            [str(self.bin_dir / "rabbitmqctl"), "-n", self.name, "-q", *args],
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
