"""Every queue, exchange and Redis key name inferq uses, built from the namespace.

One place, so that two deployments (or two test runs) sharing a broker and a Redis never
touch each other's names.
"""

from __future__ import annotations

from dataclasses import dataclass

#: AMQP header of a message the dead-letter consumer published again: how many times so far.
REPUBLISHED_HEADER = "x-inferq-republished"


def version_key(model: str, number: int) -> str:
    """The served name of a catalog version, ``digits@3``: its registry record's name, its
    queue's suffix, and the ``model`` of its tasks. A class model's served name is its bare name."""
    return f"{model}@{number}"


@dataclass(frozen=True)
class Names:
    """Names within one namespace."""

    namespace: str

    # --- RabbitMQ -------------------------------------------------------------------------
    def model_queue(self, model: str) -> str:
        """The durable queue a model's workers consume."""
        return f"{self.namespace}.model.{model}"

    @property
    def dead_letter_exchange(self) -> str:
        """Where the broker sends tasks past their delivery limit or their deadline."""
        return f"{self.namespace}.dead-letter"

    @property
    def dead_letter_queue(self) -> str:
        """The queue whose consumer marks dead-lettered tasks failed or expired."""
        return f"{self.namespace}.dead-letter"

    # --- Redis ----------------------------------------------------------------------------
    def task(self, task_id: str) -> str:
        """Hash holding one task's state and result."""
        return f"{self.namespace}:task:{task_id}"

    def idempotency(self, model: str, key: str) -> str:
        """String mapping a client's Idempotency-Key (per model) to the task it created."""
        return f"{self.namespace}:idempotency:{model}:{key}"

    @property
    def task_done_channel(self) -> str:
        """Pub/sub channel announcing each task that reached a final state."""
        return f"{self.namespace}:task-done"

    @property
    def replication_mark(self) -> str:
        """A key each worker writes just before a Redis WAIT (`TaskStore.finish` with
        replicas), so that the WAIT covers every write before it, whichever connection made it."""
        return f"{self.namespace}:replication-mark"

    @property
    def models(self) -> str:
        """Set of the names of every model ever registered (and not expired)."""
        return f"{self.namespace}:models"

    def model(self, model: str) -> str:
        """A model's registry record (JSON)."""
        return f"{self.namespace}:model:{model}"

    def workers(self, model: str) -> str:
        """Set of the ids of a model's workers, live or recently dead."""
        return f"{self.namespace}:workers:{model}"

    def heartbeat(self, model: str, worker_id: str) -> str:
        """A worker's heartbeat key; it exists while the worker is live."""
        return f"{self.namespace}:heartbeat:{model}:{worker_id}"

    def key_rate(self, key_id: str) -> str:
        """An API key's rate limit state (GCRA: the theoretical arrival time, ms)."""
        return f"{self.namespace}:apikey:{key_id}:rate"

    def key_in_flight(self, key_id: str) -> str:
        """Sorted set of an API key's unfinished tasks, scored by their deadline (ms)."""
        return f"{self.namespace}:apikey:{key_id}:in-flight"

    @property
    def key_pattern(self) -> str:
        """Glob matching every Redis key of this namespace."""
        return f"{self.namespace}:*"
