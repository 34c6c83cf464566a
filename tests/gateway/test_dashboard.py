"""The dashboard as a user sees it: the page served by a live gateway, run in headless
Chromium (Debian's ``chromium``), its DOM read after the page's script has fetched and
rendered the gateway's data."""

from __future__ import annotations

import shutil
import struct
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import httpx
import pytest

from tests.stack import ROOT, Stack, wait_until

# As the sandboxed CI machines need them: root needs --no-sandbox, and the machine has no
# internet, so nothing may try to reach Google's services.
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
# Virtual time: the page's timers and fetches run, but Chromium stops after 2.5 s of page
# time (the first refresh and one more), however long the machine takes in real time.
RENDER = "--virtual-time-budget=2500"


@pytest.fixture
def chromium(tmp_path: Path) -> list[str]:
    """The command line that starts headless Chromium with a fresh profile."""
    binary = shutil.which("chromium")
    if binary is None:
        pytest.fail("chromium is not installed: run scripts/ensure_browser.sh (make test does)")
    return [binary, *CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'profile'}"]


def run_chromium(command: list[str]) -> str:
    done = subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, f"chromium exited {done.returncode}:\n{done.stderr[-3000:]}"
    return done.stdout


class DashboardFields(HTMLParser):
    """The texts of ``data-field`` elements, per model card (``data-model``), and the banner."""

    def __init__(self) -> None:
        super().__init__()
        self.models: dict[str, dict[str, str]] = {}
        self.banner = ""
        self._model: str | None = None
        self._field: str | None = None
        self._in_banner = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = dict(attrs)
        model = attributes.get("data-model")
        if model:
            self._model = model
            self.models[model] = {}
        if attributes.get("data-field") and self._model:
            self._field = attributes["data-field"]
        self._in_banner = attributes.get("id") == "banner"

    def handle_endtag(self, tag: str) -> None:
        self._field = None
        self._in_banner = False
        if tag == "section":
            self._model = None

    def handle_data(self, data: str) -> None:
        if self._model and self._field:
            fields = self.models[self._model]
            fields[self._field] = fields.get(self._field, "") + data
        if self._in_banner:
            self.banner += data


def rendered(html: str) -> DashboardFields:
    parser = DashboardFields()
    parser.feed(html)
    return parser


def test_dashboard_shows_models_workers_and_latency(
    shared_stack: Stack, chromium: list[str], tmp_path: Path
) -> None:
    with httpx.Client(base_url=shared_stack.url, timeout=15) as client:

        def tasks_done() -> int:
            return sum(w["tasks_done"] for w in client.get("/models/model_a").json()["workers"])

        before = tasks_done()
        for i in range(3):
            task = client.post("/predict/model_a?wait=5", json={"data": f"dashboard {i}"})
            assert task.status_code == 200 and task.json()["status"] == "succeeded"
        # The worker reports its count with its next heartbeat (every 2 s by default).
        wait_until(lambda: tasks_done() >= before + 3, 10, "the worker to report its tasks")
        stats = client.get("/stats").json()
    assert stats["models"]["model_a"]["p50_ms"] >= 0

    url = f"{shared_stack.url}/dashboard"
    page = rendered(run_chromium([*chromium, RENDER, "--dump-dom", url]))

    assert page.banner == ""
    assert {"model_a", "model_b"} <= page.models.keys()
    for name in ("model_a", "model_b"):
        assert page.models[name]["name"] == name
        assert page.models[name]["live_workers"] == "1"
        assert page.models[name]["queue_depth"].replace(",", "").isdigit()
    model_a = page.models["model_a"]
    for percentile in ("p50_ms", "p90_ms", "p99_ms"):
        value = model_a[percentile]
        assert value.endswith(" ms") and value[:-3].replace(",", "").isdigit(), model_a
    assert int(model_a["tasks_done"].replace(",", "")) >= before + 3

    screenshot = tmp_path / "dashboard.png"
    run_chromium([*chromium, RENDER, "--window-size=1280,800", f"--screenshot={screenshot}", url])
    png = screenshot.read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    assert struct.unpack(">II", png[16:24]) == (1280, 800)
    # A blank 1280x800 page compresses to a few kB; text, tables and cards take far more.
    assert len(png) > 20_000, f"screenshot of {len(png)} bytes: is the page empty?"


def test_dashboard_says_when_the_gateway_is_unreachable(chromium: list[str]) -> None:
    # The page opened from disk has no gateway behind it: every fetch fails.
    page_file = ROOT / "api_service" / "static" / "dashboard.html"
    page = rendered(run_chromium([*chromium, RENDER, "--dump-dom", page_file.as_uri()]))
    assert page.banner.startswith("Gateway unreachable"), page.banner
    assert page.models == {}
