"""Tasks: each task's state and result, kept in one Redis hash per task.

- `inferq.tasks.state`: the statuses, a task's stored state, task ids and the clock.
- `inferq.tasks.outcomes`: the final states a worker or the dead-letter consumer writes.
- `inferq.tasks.store`: `TaskStore`, which reads and moves the records by the Lua scripts in
  ``lua/``, and the task-done notice those scripts publish.
"""
