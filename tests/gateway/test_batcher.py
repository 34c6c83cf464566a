"""The publish batcher's packing rules, against a store and a publisher that only record
what they are given (the real ones are exercised by every integration test)."""

from __future__ import annotations

import asyncio

import pytest

from api_service.core.batcher import PublishBatcher
from inferq.errors import BrokerUnavailable
from proto.task_pb2 import TaskEnvelope


class Recorder:
    """Stands in for both the task store and the publisher; ``gate`` holds publishes."""

    def __init__(self) -> None:
        self.created: list[list[str]] = []
        self.published: list[list[str]] = []
        self.in_flight = 0
        self.most_in_flight = 0
        self.gate = asyncio.Event()
        self.gate.set()
        self.fail: Exception | None = None

    async def create(self, tasks: list[TaskEnvelope]) -> None:
        self.created.append([t.task_id for t in tasks])

    async def publish(self, queue: str, tasks: list[TaskEnvelope]) -> None:
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        try:
            await self.gate.wait()
            if self.fail:
                raise self.fail
            self.published.append([t.task_id for t in tasks])
        finally:
            self.in_flight -= 1


def batcher(recorder: Recorder, max_tasks: int = 64, max_in_flight: int = 16) -> PublishBatcher:
    return PublishBatcher(recorder, recorder, max_tasks, max_in_flight)  # type: ignore[arg-type]


def task(n: int) -> TaskEnvelope:
    return TaskEnvelope(task_id=f"t{n}", model="m")


async def test_a_lone_task_goes_out_at_once_alone() -> None:
    recorder = Recorder()
    await asyncio.wait_for(batcher(recorder).submit("q", task(0), batch_size=32), 1)
    assert recorder.published == [["t0"]] and recorder.created == [["t0"]]


async def test_a_task_left_unrecorded_is_only_published() -> None:
    recorder = Recorder()
    packer = batcher(recorder)
    sends = [
        asyncio.create_task(packer.submit("q", task(n), batch_size=8, record=n != 1))
        for n in range(3)
    ]
    await asyncio.wait_for(asyncio.gather(*sends), 1)
    assert recorder.published == [["t0", "t1", "t2"]]
    assert recorder.created == [["t0", "t2"]]


async def test_tasks_that_arrive_during_a_publish_share_the_next_message() -> None:
    recorder = Recorder()
    packer = batcher(recorder)
    recorder.gate.clear()
    first = asyncio.create_task(packer.submit("q", task(0), batch_size=3))
    await asyncio.sleep(0)
    later = [asyncio.create_task(packer.submit("q", task(n), batch_size=3)) for n in range(1, 6)]
    await asyncio.sleep(0.01)
    recorder.gate.set()
    await asyncio.wait_for(asyncio.gather(first, *later), 1)
    # The model's batch size caps a message; the rest go out beside it.
    assert sorted(recorder.published) == [["t0"], ["t1", "t2", "t3"], ["t4", "t5"]]
    assert sorted(recorder.created) == sorted(recorder.published)  # records: same groups


async def test_one_task_messages_are_published_side_by_side() -> None:
    recorder = Recorder()
    packer = batcher(recorder, max_in_flight=4)
    recorder.gate.clear()
    sends = [asyncio.create_task(packer.submit("q", task(n), batch_size=1)) for n in range(10)]
    await asyncio.sleep(0.01)
    assert recorder.most_in_flight == 4
    recorder.gate.set()
    await asyncio.wait_for(asyncio.gather(*sends), 1)
    assert sorted(recorder.published) == sorted([f"t{n}"] for n in range(10))


async def test_a_failed_publish_fails_every_task_it_carried() -> None:
    recorder = Recorder()
    packer = batcher(recorder)
    recorder.gate.clear()
    recorder.fail = BrokerUnavailable("down", retry_after_s=1)
    sends = [asyncio.create_task(packer.submit("q", task(n), batch_size=8)) for n in range(3)]
    await asyncio.sleep(0.01)
    recorder.gate.set()
    results = await asyncio.wait_for(asyncio.gather(*sends, return_exceptions=True), 1)
    assert all(isinstance(r, BrokerUnavailable) for r in results)
    with pytest.raises(BrokerUnavailable):  # and the batcher is not stuck: the next one tries
        await asyncio.wait_for(packer.submit("q", task(9), batch_size=8), 1)


async def test_records_are_created_after_the_confirm_and_not_for_finished_tasks() -> None:
    recorder = Recorder()
    packer = PublishBatcher(
        recorder,  # type: ignore[arg-type]
        recorder,  # type: ignore[arg-type]
        max_tasks=64,
        max_in_flight=16,
        is_finished=lambda task_id: task_id == "t1",
    )
    recorder.gate.clear()
    first = asyncio.create_task(packer.submit("q", task(0), batch_size=8))
    await asyncio.sleep(0.01)
    assert recorder.created == []  # not while its message awaits the confirm
    later = [asyncio.create_task(packer.submit("q", task(n), batch_size=8)) for n in (1, 2)]
    await asyncio.sleep(0.01)
    recorder.gate.set()
    await asyncio.wait_for(asyncio.gather(first, *later), 1)
    assert recorder.published == [["t0"], ["t1", "t2"]]
    # t1's final state was already known: its record would add nothing.
    assert recorder.created == [["t0"], ["t2"]]


async def test_a_request_waits_for_its_record_and_learns_if_it_failed() -> None:
    recorder = Recorder()
    gate = asyncio.Event()
    create = recorder.create

    async def slow_create(tasks: list[TaskEnvelope]) -> None:
        await gate.wait()
        await create(tasks)
        raise ConnectionError("redis went away")

    recorder.create = slow_create  # type: ignore[method-assign]
    sending = asyncio.create_task(batcher(recorder).submit("q", task(0), batch_size=8))
    await asyncio.sleep(0.01)
    assert recorder.published == [["t0"]] and not sending.done()
    gate.set()
    with pytest.raises(ConnectionError):
        await asyncio.wait_for(sending, 1)


async def test_a_task_that_finished_before_its_confirm_returns_at_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    recorder = Recorder()
    packer = batcher(recorder)
    recorder.gate.clear()
    finished: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    sending = asyncio.create_task(packer.submit("q", task(0), batch_size=8, finished=finished))
    await asyncio.sleep(0.01)
    assert not sending.done()  # neither confirmed nor finished yet
    finished.set_result(None)
    await asyncio.wait_for(sending, 1)  # the worker was quicker than the confirm
    # The submission goes on behind; a failure of it is logged, not lost silently.
    recorder.fail = BrokerUnavailable("the message broker is unavailable", retry_after_s=2)
    recorder.gate.set()
    await asyncio.sleep(0.01)
    assert "a finished task's submission failed" in caplog.text


async def test_a_request_that_goes_away_while_waiting_is_not_published() -> None:
    recorder = Recorder()
    packer = batcher(recorder)
    recorder.gate.clear()
    first = asyncio.create_task(packer.submit("q", task(0), batch_size=1))
    await asyncio.sleep(0.01)  # t0's publish holds the lane; t1 waits behind it
    finished: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    gone = asyncio.create_task(packer.submit("q", task(1), batch_size=1, finished=finished))
    await asyncio.sleep(0.01)
    gone.cancel()
    recorder.gate.set()
    await asyncio.wait_for(first, 1)
    await asyncio.sleep(0.01)
    assert recorder.published == [["t0"]]
