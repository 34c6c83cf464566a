"""Runs several child processes as one: logs prefixed by process name, and a graceful stop of
all of them (SIGTERM, then SIGKILL after a grace period) on Ctrl-C, on SIGTERM, or when one
of them exits. With ``INFERQ_LOG_FILE`` set, each child writes its own file beside it
(``inferq-gateway.log``, ``inferq-model_a.log``): rotation cannot be shared by processes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from inferq.settings import LogSettings
from inferq_cli.logs import log_file_for

GRACE_S = 30.0


@dataclass(frozen=True)
class Child:
    name: str
    argv: list[str]
    env: dict[str, str] | None = None  # added to this process's environment


def _pump(name: str, stream: object, width: int) -> None:
    for line in iter(stream.readline, ""):  # type: ignore[attr-defined]
        sys.stdout.write(f"{name:<{width}} | {line}")
        sys.stdout.flush()


def start(child: Child, width: int, log_file: str | None) -> subprocess.Popen[str]:
    """Starts ``child`` in a session of its own, its output lines copied to ours behind its
    name (padded to ``width``); with ``log_file``, it writes its own file beside it."""
    env = {**os.environ, **(child.env or {})}
    if log_file:
        env["INFERQ_LOG_FILE"] = log_file_for(log_file, child.name)
    process = subprocess.Popen(
        child.argv,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        bufsize=1,
        # Own session: a terminal's Ctrl-C reaches only us, and we stop each child once.
        start_new_session=True,
        env=env,
    )
    threading.Thread(target=_pump, args=(child.name, process.stdout, width), daemon=True).start()
    return process


def supervise(children: list[Child]) -> int:
    """Runs the children until one exits or we are told to stop; returns an exit code."""
    stop = threading.Event()
    previous = {
        sig: signal.signal(sig, lambda *_: stop.set()) for sig in (signal.SIGINT, signal.SIGTERM)
    }
    width = max(len(child.name) for child in children)
    log_file = LogSettings().file
    processes: dict[str, subprocess.Popen[str]] = {}
    try:
        for child in children:
            processes[child.name] = start(child, width, log_file)
        exited = None
        while not stop.is_set() and exited is None:
            exited = next((n for n, p in processes.items() if p.poll() is not None), None)
            stop.wait(0.2)
        if exited is not None:
            print(
                f"{exited} exited with {processes[exited].returncode}; stopping the rest",
                flush=True,
            )
        return _stop_all(processes) if exited is None else (processes[exited].returncode or 1)
    finally:
        _stop_all(processes)
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _stop_all(processes: dict[str, subprocess.Popen[str]]) -> int:
    stop_processes(processes.values())
    return 0


def stop_processes(processes: Iterable[subprocess.Popen[Any]], grace_s: float = GRACE_S) -> None:
    """SIGTERM every process still running, give them ``grace_s`` together to exit (workers
    drain), then SIGKILL the rest."""
    processes = list(processes)
    for process in processes:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    for process in processes:
        try:
            process.wait(max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
