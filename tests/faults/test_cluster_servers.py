"""The failover run's private servers (load_testing/cluster.py), alone: the three RabbitMQ
nodes form one cluster, a quorum queue has a member on each and a new leader when its leader
is SIGKILLed, a client's connection is found by its local port and closed by the broker, the
Sentinels promote the replica when the primary is SIGKILLed and take the old primary back as a
replica, and closing removes every process and the directory. The machine's shared servers
are not touched (other node names, ports and cookie)."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

import aio_pika
import pytest
import redis

from load_testing.cluster import RedisSentinels, Servers, local_ports, missing

pytestmark = pytest.mark.skipif(bool(missing()), reason=f"not installed: {missing()}")


def test_servers_cluster_failover_and_cleanup(tmp_path: Path) -> None:
    servers = Servers(tmp_path).start()
    try:
        rabbit, sentinels = servers.rabbit, servers.redis
        names = [node.name for node in rabbit.nodes]
        assert rabbit.running_nodes() == sorted(names)
        status = rabbit.nodes[0].ctl("cluster_status").stdout
        assert all(name in status for name in names), status
        assert "rabbit@" not in status.replace("rabbit-", "")  # not the machine's own node

        asyncio.run(_declare_and_cut(servers))

        leader = rabbit.leader_of("failover.test")
        assert leader is not None
        assert rabbit.members_of("failover.test") == sorted(names)
        leader.kill()
        deadline = time.monotonic() + 30
        while rabbit.leader_of("failover.test") in (None, leader):
            assert time.monotonic() < deadline, "no new leader"
            time.sleep(0.2)
        leader.start()
        leader.await_startup()
        assert rabbit.running_nodes() == sorted(names)

        old = sentinels.master_port()
        assert old == sentinels.ports[0]
        with redis.Redis(port=old) as primary:
            primary.set("written", "before")
            assert primary.wait(1, 2000) == 1
        assert sentinels.kill_primary() == old
        new_port = sentinels.wait_promoted(old, 30)
        assert new_port == sentinels.ports[1]
        with redis.Redis(port=new_port) as promoted:
            assert promoted.get("written") == b"before"
        sentinels.start_server(old, replica_of=new_port)
        # The old primary comes back as a replica. On a loaded 2-core host (the CI's) a full
        # resync took past 20 s once, and once the Sentinels, finding the new primary slow to
        # answer for a second (their down-after time), failed over again, back to the old one:
        # either way the two end as one primary, the one the Sentinels name, and its replica.
        deadline = time.monotonic() + 60
        while not _primary_and_replica(sentinels, old, new_port):
            assert time.monotonic() < deadline, (
                "the old primary did not rejoin as a replica",
                sentinels.replication(old),
                sentinels.replication(new_port),
            )
            time.sleep(0.2)
        primary_port = sentinels.master_port()
        assert primary_port is not None
        with redis.Redis(port=primary_port) as primary:
            assert primary.get("written") == b"before"
        pids = [n.process.pid for n in rabbit.nodes if n.process]
        pids += [p.pid for p in [*sentinels.sentinels, *sentinels.servers.values()]]
    finally:
        servers.close()
    assert not servers.dir.exists()
    for pid in pids:
        assert not Path(f"/proc/{pid}").exists() or _zombie(pid), f"process {pid} left running"


async def _declare_and_cut(servers: Servers) -> None:
    rabbit = servers.rabbit
    connection = await aio_pika.connect(rabbit.urls[1])
    closed = asyncio.Event()
    connection.close_callbacks.add(lambda *_: closed.set())
    channel = await connection.channel()
    await channel.declare_queue("failover.test", durable=True, arguments={"x-queue-type": "quorum"})
    ports = await asyncio.to_thread(local_ports, os.getpid(), {n.port for n in rabbit.nodes})
    assert len(ports) == 1
    nodes = await asyncio.to_thread(rabbit.close_connections, ports, "test: cut")
    assert nodes == [rabbit.nodes[1].name]
    await asyncio.wait_for(closed.wait(), 10)


def _primary_and_replica(sentinels: RedisSentinels, one: int, other: int) -> bool:
    """Whether the Sentinels name one of the two servers primary and the other replicates it."""
    primary = sentinels.master_port()
    if primary not in (one, other):
        return False
    replica = sentinels.replication(other if primary == one else one)
    return bool(replica.get("master_port") == primary and replica.get("master_link_status") == "up")


def _zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] == "Z"
    except OSError:
        return True
