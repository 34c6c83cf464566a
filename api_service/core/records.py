"""When the gateway writes a task's ``queued`` record: the one rule.

Every task a client was told about (a ``202``) must have a record to poll; a record costs a
Redis write per task, so none is written that a worker's final write makes moot (that write
holds all a record would). Hence:

1. A task whose final state the gateway has already seen gets no record.
2. A task nobody waits for gets its record once the broker confirmed its message, in one
   Redis call per message (`PublishBatcher`).
3. A task whose request waits for its result gets its record only if it is still pending
   `RECORD_AFTER_S` into the wait, or when the wait ends (`TaskWaiter.wait_watched`): a
   request answered with the final state leaves no record behind.
4. A task with an Idempotency-Key is recorded as in 2 whatever its wait: another request
   with the key may be answered with its id at once.

Workers may write a task before its record exists; `TaskStore.create` never overwrites what
they wrote, so the order of the two never matters.
"""

from __future__ import annotations

RECORD_AFTER_S = 1.0  # rule 3: a task still pending this long into a wait is recorded


def recorded_at_confirm(waits: bool, has_idempotency_key: bool) -> bool:
    """Whether the task's record is written once its message is confirmed (rules 2 and 4);
    if not, its waiting request writes it if needed (rule 3). Rule 1 applies either way."""
    return has_idempotency_key or not waits
