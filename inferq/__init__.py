"""inferq: serve machine-learning models behind a queue.

This package holds what every role (gateway, registry, worker) shares: settings, the names of
queues and keys, the task codec and the task store. Each role lives in its own top-level
package: `api_service`, `model_registry`, `workers`.
"""

__version__ = "0.1.0"
