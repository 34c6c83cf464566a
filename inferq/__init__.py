"""inferq: serve machine-learning models behind a queue.

This package holds what every role (gateway, registry, worker) shares: settings, the names of
queues and keys, the error hierarchy, the topology, tracing, the tasks' state, outcomes and
store. Each role lives in its own top-level package (`api_service`, `model_registry`,
`workers`) and the ``inferq`` command that starts them in `inferq_cli`; this package imports
none of them (`tests/test_layers.py`).
"""

__version__ = "0.1.0"
