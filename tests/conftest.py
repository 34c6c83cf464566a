"""Fixtures for integration tests: a namespace of their own on the real RabbitMQ and Redis,
real gateway and worker processes, and a clean-up that removes only what the test created."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.stack import Stack


def new_namespace() -> str:
    return f"test-{os.urandom(4).hex()}"


def make_stack(tmp_path_factory: pytest.TempPathFactory, **env: str) -> Iterator[Stack]:
    namespace = new_namespace()
    with Stack(namespace, tmp_path_factory.mktemp(namespace), **env) as stack:
        yield stack


@pytest.fixture(scope="session")
def shared_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """One gateway with model_a and model_b, shared by the tests that only read from it."""
    for stack in make_stack(tmp_path_factory):
        stack.start_gateway()
        stack.start_worker("model_a")
        stack.start_worker("model_b")
        stack.wait_live("model_a")
        stack.wait_live("model_b")
        yield stack


@pytest.fixture
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """A namespace of the test's own, for tests that start, kill or fill things."""
    yield from make_stack(tmp_path_factory)


@pytest.fixture
def root() -> Path:
    return Path(__file__).resolve().parent.parent
