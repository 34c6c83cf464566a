"""What the registry knows about a model and about each of its workers."""

from __future__ import annotations

import base64
from dataclasses import asdict, dataclass, field, fields
from typing import Any

import orjson


@dataclass(frozen=True)
class ModelRecord:
    """A model as its workers registered it: enough for a gateway that never imported its code
    to route a request, convert it JSON <-> protobuf and describe it."""

    name: str
    version: str
    queue: str
    request_type: str  # full protobuf name of the request message
    response_type: str
    descriptor_set: bytes  # serialized FileDescriptorSet defining both messages
    queue_max_length: int
    description: str = ""
    registered_at_ms: int = 0
    #: Most requests a worker runs as one batch: the gateway packs no more tasks than this
    #: into one message, so a message never holds more work than one worker runs at once.
    max_batch_size: int = 1
    #: The model's `workers.base.Model.scale_to_zero`: its tasks are accepted while no worker
    #: is live (the record outlives the workers by INFERQ_MODEL_RECORD_TTL_S).
    scale_to_zero: bool = False

    def to_json(self) -> bytes:
        data = asdict(self)
        data["descriptor_set"] = base64.b64encode(self.descriptor_set).decode()
        return orjson.dumps(data)

    @classmethod
    def from_json(cls, raw: bytes | str) -> ModelRecord:
        data = orjson.loads(raw)
        data["descriptor_set"] = base64.b64decode(data["descriptor_set"])
        # A field this version does not know (a newer worker's, mid-upgrade) is left out.
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


@dataclass(frozen=True)
class WorkerHeartbeat:
    """The small stats payload a worker renews with each heartbeat."""

    worker_id: str
    model: str
    version: str
    host: str
    pid: int
    started_at_ms: int
    tasks_done: int = 0
    tasks_failed: int = 0
    in_flight: int = 0
    rate_per_s: float = 0.0  # tasks finished per second, smoothed over recent heartbeats
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> bytes:
        return orjson.dumps(asdict(self))

    @classmethod
    def from_json(cls, raw: bytes | str) -> WorkerHeartbeat:
        return cls(**orjson.loads(raw))
