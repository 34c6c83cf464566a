"""Private servers for the failover run (load_testing/failover.py): a RabbitMQ cluster of three
nodes and a Redis primary with one replica watched by three Sentinels, all on loopback, on
ports of their own, with their data, logs and Erlang cookie under one temporary directory.

The machine's own RabbitMQ (:5672, node ``rabbit@HOST``) and Redis (:6379) are shared with
everyone and are never touched: these nodes have other names (``rabbit-N-TAG@localhost``), other
AMQP and distribution ports and their own cookie; they register with the machine's epmd, as
every Erlang node does, under those names. `Servers.close` SIGKILLs every process group it
started and removes the directory.

    python -m load_testing.cluster      # start them, print the URLs, stop on Ctrl-C
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import redis

from load_testing.processes import free_port

RABBITMQ_PACKAGE_BIN = "/usr/lib/rabbitmq/bin"  # Debian's real scripts (/usr/sbin: su wrappers)
# rabbitmqctl listens for Erlang distribution on one of these; a node must not take them.
CLI_DIST_PORTS = range(35672, 35683)
MASTER_NAME = "inferq-failover"


def find_rabbitmq_bin() -> Path | None:
    """The directory holding rabbitmq-server and rabbitmqctl (not Debian's su wrappers)."""
    named = os.environ.get("INFERQ_TEST_RABBITMQ_BIN")
    path = os.environ.get("PATH", "").split(os.pathsep)
    for directory in [named] if named else [RABBITMQ_PACKAGE_BIN, *path]:
        server = Path(directory or ".", "rabbitmq-server")
        ctl = server.with_name("rabbitmqctl")
        if (
            server.is_file()
            and ctl.is_file()
            and os.access(server, os.X_OK)
            and server.resolve().name != "rabbitmq-script-wrapper"
        ):
            return server.parent
    return None


def find_redis_server() -> Path | None:
    named = os.environ.get("INFERQ_TEST_REDIS_SERVER")
    found = named or shutil.which("redis-server")
    return Path(found) if found and os.access(found, os.X_OK) else None


def missing() -> str:
    """What is not installed for the servers, or ""."""
    lacking = []
    if find_rabbitmq_bin() is None:
        lacking.append("rabbitmq-server and rabbitmqctl (apt-get install rabbitmq-server)")
    if find_redis_server() is None:
        lacking.append("redis-server (apt-get install redis-server)")
    return "; ".join(lacking)


def node_port() -> int:
    """A free port, outside the range rabbitmqctl itself listens on."""
    while True:
        port = free_port()
        if port not in CLI_DIST_PORTS and port + 1 not in CLI_DIST_PORTS:
            return port


def wait_until(condition: Callable[[], object], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.1)


def start(
    argv: Sequence[str], log: Path, env: dict[str, str] | None = None
) -> subprocess.Popen[bytes]:
    """``argv`` in a process group of its own (so a SIGKILL takes its children too)."""
    with open(log, "ab") as out:
        return subprocess.Popen(
            argv, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )


def kill_group(process: subprocess.Popen[bytes]) -> None:
    """SIGKILL: no goodbye to its peers or clients, as when a machine dies."""
    if process.poll() is None:
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        process.wait()


class RabbitNode:
    """One node of the cluster: data, logs and config under ``workdir/NAME``."""

    def __init__(self, cluster_dir: Path, index: int, tag: str, bin_dir: Path) -> None:
        self.index = index
        self.name = f"rabbit-{index}-{tag}@localhost"
        self.bin_dir = bin_dir
        self.dir = cluster_dir / f"rabbit-{index}"
        self.dir.mkdir(parents=True)
        self.port = node_port()
        self.url = f"amqp://guest:guest@127.0.0.1:{self.port}/"
        self.process: subprocess.Popen[bytes] | None = None
        (self.dir / "rabbitmq.conf").write_text(
            "disk_free_limit.absolute = 10MB\nlog.file.level = info\n"
        )
        (self.dir / "enabled_plugins").write_text("[].\n")
        (self.dir / "rabbitmq-env.conf").write_text("")
        self.env = {
            **os.environ,
            "HOME": str(cluster_dir),  # the Erlang cookie all nodes and rabbitmqctl share
            "RABBITMQ_NODENAME": self.name,
            "RABBITMQ_NODE_IP_ADDRESS": "127.0.0.1",
            "RABBITMQ_NODE_PORT": str(self.port),
            "RABBITMQ_DIST_PORT": str(node_port()),
            "RABBITMQ_MNESIA_BASE": str(self.dir / "mnesia"),
            "RABBITMQ_LOG_BASE": str(self.dir / "log"),
            "RABBITMQ_CONFIG_FILE": str(self.dir / "rabbitmq"),
            "RABBITMQ_ADVANCED_CONFIG_FILE": str(self.dir / "advanced.config"),
            "RABBITMQ_CONF_ENV_FILE": str(self.dir / "rabbitmq-env.conf"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(self.dir / "enabled_plugins"),
            "RABBITMQ_PID_FILE": str(self.dir / "rabbitmq.pid"),
            "RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS": "-kernel inet_dist_use_interface {127,0,0,1}",
        }

    def start(self) -> None:
        self.process = start(
            [str(self.bin_dir / "rabbitmq-server")], self.dir / "server.log", self.env
        )

    def await_startup(self, timeout: float = 90) -> None:
        started = time.monotonic()
        # await_startup fails at once while the node has not registered with epmd yet.
        while self.ctl("await_startup", "--timeout", "30", check=False).returncode != 0:
            if not self.alive() or time.monotonic() - started > timeout:
                raise RuntimeError(f"RabbitMQ node {self.name} did not start:\n{self.log()}")
            time.sleep(0.3)

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def kill(self) -> None:
        if self.process is not None:
            kill_group(self.process)

    def ctl(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(self.bin_dir / "rabbitmqctl"), "-n", self.name, "-q", *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=90,
            check=check,
        )

    def ctl_json(self, *args: str) -> Any:
        return json.loads(self.ctl(*args, "--formatter", "json").stdout or "[]")

    def log(self) -> str:
        path = self.dir / "server.log"
        return path.read_text(errors="replace")[-3000:] if path.exists() else ""


class RabbitCluster:
    """Three (``size``) nodes started at once, then joined to the first."""

    def __init__(self, workdir: Path, size: int = 3, bin_dir: Path | None = None) -> None:
        found = bin_dir or find_rabbitmq_bin()
        if found is None:
            raise RuntimeError(missing())
        tag = secrets.token_hex(3)
        cookie = workdir / ".erlang.cookie"
        cookie.write_text(secrets.token_hex(16).upper())
        cookie.chmod(0o400)
        self.nodes = [RabbitNode(workdir, i, tag, found) for i in range(1, size + 1)]

    @property
    def urls(self) -> list[str]:
        return [node.url for node in self.nodes]

    @property
    def amqp_url(self) -> str:
        """What INFERQ_AMQP_URL takes: every node's URL, joined by commas."""
        return ",".join(self.urls)

    def start(self) -> None:
        for node in self.nodes:
            node.start()
        with ThreadPoolExecutor(len(self.nodes)) as pool:
            list(pool.map(lambda node: node.await_startup(), self.nodes))
        first = self.nodes[0]
        for node in self.nodes[1:]:
            node.ctl("stop_app")
            node.ctl("join_cluster", first.name)
            node.ctl("start_app")
            node.ctl("await_startup", "--timeout", "60")
        wait_until(lambda: len(self.running_nodes()) == len(self.nodes), 30, "the cluster")

    def live(self) -> list[RabbitNode]:
        return [node for node in self.nodes if node.alive()]

    def running_nodes(self, via: RabbitNode | None = None) -> list[str]:
        node = via or self.live()[0]
        status = node.ctl_json("cluster_status")
        return sorted(status.get("running_nodes", []))

    def node_named(self, name: str) -> RabbitNode:
        return next(node for node in self.nodes if node.name == name)

    def leader_of(self, queue: str) -> RabbitNode | None:
        """The node leading quorum queue ``queue`` (None: no such queue, or no leader now)."""
        for node in self.live():
            try:
                rows = node.ctl_json("list_queues", "name", "leader", "type")
            except (subprocess.SubprocessError, ValueError):
                continue
            for row in rows:
                if row.get("name") == queue and row.get("leader"):
                    return self.node_named(row["leader"])
            return None
        return None

    def members_of(self, queue: str) -> list[str]:
        rows = self.live()[0].ctl_json("list_queues", "name", "members")
        return next((sorted(row["members"]) for row in rows if row.get("name") == queue), [])

    def connections(self) -> list[dict[str, Any]]:
        """Every client connection of the cluster (any node lists them all): its Erlang pid
        (``<rabbit-2-TAG@localhost.N.N.N>``; the JSON formatter mangles it), peer port, node."""
        via = self.live()[0]
        rows = via.ctl("list_connections", "--no-table-headers", "pid", "peer_port").stdout
        found = []
        for line in rows.splitlines():
            pid, _, port = line.strip().partition("\t")
            if pid.startswith("<") and port.isdigit():
                found.append({"pid": pid, "peer_port": int(port), "node": self.node_of_pid(pid)})
        return found

    def close_connections(self, local_ports: set[int], reason: str) -> list[str]:
        """Closes the connections coming from ``local_ports``; returns their nodes."""
        closed = []
        via = self.live()[0]
        for row in self.connections():
            if row["peer_port"] in local_ports:
                via.ctl("close_connection", row["pid"], reason, check=False)
                closed.append(row["node"])
        return closed

    def node_of_pid(self, pid: str) -> str:
        """The node a connection's Erlang pid lives on (``<rabbit-2-x@localhost.1.2.3>``)."""
        match = re.match(r"<([^.]+@[^.]+)\.", pid)
        return match.group(1) if match else "?"

    def close(self) -> None:
        for node in self.nodes:
            node.kill()


def replication_info(port: int, timeout_s: float = 2) -> dict[str, Any]:
    """``INFO replication`` of the Redis on ``port`` (empty while it does not answer)."""
    try:
        with redis.Redis(port=port, socket_timeout=timeout_s, decode_responses=True) as client:
            return dict(client.info("replication"))
    except redis.RedisError:
        return {}


class RedisSentinels:
    """A Redis primary, one replica, and three Sentinels watching them (quorum 2)."""

    def __init__(self, workdir: Path, program: Path | None = None) -> None:
        found = program or find_redis_server()
        if found is None:
            raise RuntimeError(missing())
        self.program = found
        self.dir = workdir / "redis"
        self.dir.mkdir()
        self.ports = [free_port(), free_port()]  # primary, replica (at start)
        self.sentinel_ports = [free_port() for _ in range(3)]
        self.servers: dict[int, subprocess.Popen[bytes]] = {}
        self.sentinels: list[subprocess.Popen[bytes]] = []

    @property
    def url(self) -> str:
        """What INFERQ_REDIS_URL takes: the Sentinels, the master's name, database 0."""
        hosts = ",".join(f"127.0.0.1:{port}" for port in self.sentinel_ports)
        return f"redis+sentinel://{hosts}/{MASTER_NAME}/0"

    def start_server(self, port: int, replica_of: int | None = None) -> None:
        data = self.dir / str(port)
        data.mkdir(exist_ok=True)
        argv = [str(self.program), "--port", str(port), "--bind", "127.0.0.1",
                "--dir", str(data), "--appendonly", "yes", "--save", "",
                "--daemonize", "no"]  # fmt: skip
        if replica_of:
            argv += ["--replicaof", "127.0.0.1", str(replica_of)]
        self.servers[port] = start(argv, data / "redis.log")
        wait_until(lambda: ping(port), 10, f"redis-server on :{port}")

    def start(self) -> None:
        primary, replica = self.ports
        self.start_server(primary)
        self.start_server(replica, replica_of=primary)
        wait_until(lambda: self.replication(replica).get("master_link_status") == "up", 20,
                   "the replica's sync")  # fmt: skip
        for port in self.sentinel_ports:
            conf = self.dir / f"sentinel-{port}.conf"
            conf.write_text(
                f"port {port}\nbind 127.0.0.1\nprotected-mode no\ndir {self.dir}\n"
                f"sentinel monitor {MASTER_NAME} 127.0.0.1 {primary} 2\n"
                f"sentinel down-after-milliseconds {MASTER_NAME} 1000\n"
                f"sentinel failover-timeout {MASTER_NAME} 10000\n"
                f"sentinel parallel-syncs {MASTER_NAME} 1\n"
            )
            self.sentinels.append(
                start(
                    [str(self.program), str(conf), "--sentinel"], self.dir / f"sentinel-{port}.log"
                )
            )
        wait_until(self.sentinels_agree, 30, "three Sentinels that know each other and the replica")

    def sentinel(self, port: int) -> redis.Redis:
        return redis.Redis(port=port, socket_timeout=2, decode_responses=True)

    def sentinels_agree(self) -> bool:
        try:
            for port in self.sentinel_ports:
                with self.sentinel(port) as client:
                    master = client.sentinel_master(MASTER_NAME)
                    if master["num-other-sentinels"] != 2 or master["num-slaves"] != 1:
                        return False
        except redis.RedisError:
            return False
        return True

    def master_port(self) -> int | None:
        """The master's port, as the first Sentinel that answers sees it."""
        for port in self.sentinel_ports:
            try:
                with self.sentinel(port) as client:
                    address = client.sentinel_get_master_addr_by_name(MASTER_NAME)
            except redis.RedisError:
                continue
            if address:
                return int(address[1])
        return None

    def replication(self, port: int) -> dict[str, Any]:
        return replication_info(port)

    def kill_primary(self) -> int:
        """SIGKILLs the current master; returns its port."""
        port = self.master_port()
        if port is None:
            raise RuntimeError("no Sentinel names a master")
        kill_group(self.servers[port])
        return port

    def wait_promoted(self, old_port: int, timeout: float = 30) -> int:
        """Waits until the Sentinels name a new master that says it is one; returns its port."""

        def promoted() -> bool:
            port = self.master_port()
            return port not in (None, old_port) and self.replication(port).get("role") == "master"

        wait_until(promoted, timeout, f"a new master after :{old_port}")
        port = self.master_port()
        assert port is not None
        return port

    def close(self) -> None:
        for process in [*self.sentinels, *self.servers.values()]:
            kill_group(process)


def ping(port: int) -> bool:
    try:
        with redis.Redis(port=port, socket_timeout=1) as client:
            return bool(client.ping())
    except redis.RedisError:
        return False


class Servers:
    """The cluster and the Redis set, under one temporary directory; a context manager."""

    def __init__(self, parent: Path | None = None) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="inferq-failover-", dir=parent))
        self.rabbit = RabbitCluster(self.dir)
        self.redis = RedisSentinels(self.dir)

    def start(self) -> Servers:
        try:
            self.rabbit.start()
            self.redis.start()
        except BaseException:
            self.close()
            raise
        return self

    def close(self, keep_dir: bool = False) -> None:
        try:
            self.rabbit.close()
            self.redis.close()
        finally:
            if not keep_dir:
                shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> Servers:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def local_ports(pid: int, remote_ports: set[int]) -> set[int]:
    """The local ports of process ``pid``'s TCP connections to 127.0.0.1:``remote_ports``
    (Linux: its socket inodes in /proc/PID/fd, looked up in /proc/net/tcp)."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    ports = set()
    for line in Path(f"/proc/{pid}/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        local, remote, inode = fields[1], fields[2], fields[9]
        if inode in inodes and int(remote.split(":")[1], 16) in remote_ports:
            ports.add(int(local.split(":")[1], 16))
    return ports


def main() -> int:
    with Servers() as servers:
        print(f"INFERQ_AMQP_URL={servers.rabbit.amqp_url}")
        print(f"INFERQ_REDIS_URL={servers.redis.url}")
        print(f"nodes: {', '.join(servers.rabbit.running_nodes())}; data: {servers.dir}")
        print("Ctrl-C stops them and removes the data.", flush=True)
        try:
            signal.pause()
        except KeyboardInterrupt:
            pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
