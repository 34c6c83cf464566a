"""The base class a user subclasses to serve a model.

A subclass names its request and response protobuf messages and implements
`process_request` (or `process_batch`, to run several requests as one batch). The worker
runtime builds one instance per process, awaits `load()` once, feeds it requests, and awaits
`unload()` on shutdown. Resources (sessions, weights) live on ``self``.

`BytesModel` adapts the form the seed's README shows (``process_request(self, body)`` on the
serialized request, ``get_request_format()`` / ``get_response_format()`` returning message
descriptors) to the same base class.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import ClassVar, Generic, TypeVar

from google.protobuf.descriptor import Descriptor
from google.protobuf.message import Message
from google.protobuf.message_factory import GetMessageClass

from inferq.settings import WorkerSettings
from workers import context

RequestT = TypeVar("RequestT", bound=Message)
ResponseT = TypeVar("ResponseT", bound=Message)
T = TypeVar("T")


class Model(Generic[RequestT, ResponseT]):
    """Subclass this to add a model; see ``examples/word_count.py`` for a complete one."""

    #: The name clients use in ``POST /predict/{name}``; also names the model's queue.
    name: ClassVar[str]
    version: ClassVar[str] = "1"
    description: ClassVar[str] = ""
    #: The protobuf message classes of a request and its response. Class attributes, except
    #: in a `BytesModel`, which finds them from its descriptors when it is built.
    request_type: type[Message]
    response_type: type[Message]
    #: Most requests `process_batch` receives at once, and how long to wait to fill a batch.
    max_batch_size: ClassVar[int] = 1
    max_batch_delay_ms: ClassVar[float] = 0.0
    #: Batches the worker runs at the same time. More than one lets a quick model run the
    #: next batch while the last one's results travel to Redis; a model that keeps a core
    #: busy gains nothing from it.
    concurrency: ClassVar[int] = 1
    #: Whether a task is marked ``running`` in Redis before the model runs it. False saves
    #: a Redis round trip per batch, for models that answer within a millisecond or so
    #: (nobody would see them running): on its first delivery a task then goes from
    #: ``queued`` straight to its final state. A redelivered one is always marked, so a
    #: task that crashes its worker is still found out and failed (one crash later); its
    #: ``attempts`` count the recorded starts, so a killed unmarked run is not among them.
    mark_running: ClassVar[bool] = True
    #: Queue length limit for this model; None takes ``INFERQ_QUEUE_MAX_LENGTH``.
    queue_max_length: ClassVar[int | None] = None
    #: Whether the gateway accepts this model's tasks while no worker is live: they wait in
    #: its queue until one starts (an autoscaler such as KEDA scales the workers up from zero
    #: on the queue's depth). False: such a request gets 503 ModelUnavailable at once, for a
    #: model whose clients would rather know than wait for a cold start.
    scale_to_zero: ClassVar[bool] = False

    def __init__(self, settings: WorkerSettings) -> None:
        self.settings = settings
        # One thread: CPU-bound inference leaves the event loop free (heartbeats keep
        # flowing) without oversubscribing the cores ONNX Runtime already uses.
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"{self.name}-run")

    async def load(self) -> None:
        """Load weights and warm up. Called once, before the first request."""

    async def process_request(self, request: RequestT) -> ResponseT:
        """Turn one request into its response. Raise to fail the task with your error."""
        raise NotImplementedError(f"{type(self).__name__} must implement process_request")

    async def process_batch(self, requests: Sequence[RequestT]) -> list[ResponseT]:
        """Turn a batch of requests into responses, in order. The default runs them one by
        one (each with its own `workers.context.caller`); override it when the model is
        faster on a whole batch."""
        batch = context.callers()
        if len(batch) != len(requests):  # not run by the runtime (a test calling it)
            return [await self.process_request(request) for request in requests]
        responses = []
        for request, who in zip(requests, batch, strict=True):
            with context.serving(who):
                responses.append(await self.process_request(request))
        return responses

    async def unload(self) -> None:
        """Release resources. Called once, on shutdown."""

    async def run_in_thread(self, function: Callable[..., T], *args: object) -> T:
        """Run blocking or CPU-bound work off the event loop."""
        return await asyncio.get_running_loop().run_in_executor(self._executor, function, *args)

    def close_executor(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)


class BytesModel(Model[Message, Message]):
    """A model in the seed's form: ``process_request(self, body)`` gets the request's
    serialized bytes and returns the response message (or its bytes), and
    ``get_request_format()`` / ``get_response_format()`` return the messages' descriptors.
    ``name`` defaults to the class name in snake case (``ModelA`` serves ``model_a``).

    The runtime hands every model decoded messages; this adapter serializes them again, a
    copy that costs a microsecond or so for small messages. New models should subclass
    `Model` and take decoded requests."""

    def __init_subclass__(cls, **kwargs: object) -> None:
        super().__init_subclass__(**kwargs)
        if "name" not in cls.__dict__:
            cls.name = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", cls.__name__).lower()

    def __init__(self, settings: WorkerSettings) -> None:
        super().__init__(settings)
        self.request_type = GetMessageClass(self.get_request_format())
        self.response_type = GetMessageClass(self.get_response_format())

    def get_request_format(self) -> Descriptor:
        """The request message's descriptor, e.g. ``models_pb2.ModelARequest.DESCRIPTOR``."""
        raise NotImplementedError(f"{type(self).__name__} must implement get_request_format")

    def get_response_format(self) -> Descriptor:
        """The response message's descriptor."""
        raise NotImplementedError(f"{type(self).__name__} must implement get_response_format")

    async def process_request(self, body: bytes) -> Message | bytes:  # type: ignore[override]
        """Turn one serialized request into its response."""
        raise NotImplementedError(f"{type(self).__name__} must implement process_request")

    async def process_batch(self, requests: Sequence[Message]) -> list[Message]:
        responses = []
        for request in requests:
            response = await self.process_request(request.SerializeToString())
            if isinstance(response, bytes):
                response = self.response_type.FromString(response)
            responses.append(response)
        return responses
