"""Prometheus metrics of a worker, served on ``INFERQ_METRICS_PORT`` when it is set."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

_SECONDS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)

INFERENCE_SECONDS = Histogram(
    "inferq_worker_inference_seconds",
    "Time the model took for one batch",
    ["model"],
    buckets=_SECONDS,
)
QUEUE_WAIT_SECONDS = Histogram(
    "inferq_worker_queue_wait_seconds",
    "Time from a task's creation at the gateway to its pickup by a worker",
    ["model"],
    buckets=_SECONDS,
)
BATCH_SIZE = Histogram(
    "inferq_worker_batch_size",
    "Tasks per batch",
    ["model"],
    buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256),
)
IN_FLIGHT = Gauge("inferq_worker_in_flight", "Tasks being processed now", ["model"])
RESULTS_STORED = Counter(
    "inferq_worker_results_stored_total", "Final task states stored", ["model", "status"]
)
