"""Reads counters from a worker's Prometheus endpoint (``INFERQ_METRICS_PORT``)."""

from __future__ import annotations

import urllib.request
from collections.abc import Iterable

from prometheus_client.parser import text_string_to_metric_families

SCRAPE_TIMEOUT_S = 2.0


def scrape(port: int, samples: Iterable[str], host: str = "127.0.0.1") -> dict[str, float]:
    """The named samples (e.g. ``inferq_worker_batch_size_sum``), each summed over its labels;
    a sample the endpoint does not show is 0."""
    wanted = dict.fromkeys(samples, 0.0)
    with urllib.request.urlopen(f"http://{host}:{port}/metrics", timeout=SCRAPE_TIMEOUT_S) as r:
        text = r.read().decode()
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name in wanted:
                wanted[sample.name] += sample.value
    return wanted


def scrape_all(ports: Iterable[int], samples: Iterable[str]) -> dict[str, float]:
    """`scrape` over several workers, summed."""
    names = list(samples)
    total = dict.fromkeys(names, 0.0)
    for port in ports:
        for name, value in scrape(port, names).items():
            total[name] += value
    return total
