"""The dashboard's catalog as a user works it: headless Chromium (Debian's ``chromium``),
driven through Playwright, on a live gateway that allows model changes from loopback. The
test uploads hand-built ONNX files from the page's form, moves an alias with the page's
control and tries predictions in its "try it" box, reading what the page shows and checking
it against what the gateway's API says."""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright

from catalog.db import Catalog
from tests.conftest import make_stack
from tests.gateway.test_dashboard import CHROMIUM_FLAGS
from tests.models.onnx_graphs import doubler
from tests.stack import Stack

#: How long the page may take to show what a user waits for (an upload is validated in a
#: child process first; a prediction waits for its worker).
SHOWN_MS = 20_000


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """A gateway that takes model changes from this machine, and model_a's worker."""
    for stack in make_stack(tmp_path_factory, INFERQ_MODEL_CHANGES="loopback"):
        stack.start_gateway()
        stack.start_worker("model_a")
        stack.wait_live("model_a")
        yield stack


@pytest.fixture
def browser() -> Iterator[Browser]:
    """Headless Chromium, driven by Playwright."""
    binary = shutil.which("chromium")
    if binary is None:
        pytest.fail("chromium is not installed: run scripts/ensure_browser.sh (make test does)")
    # Playwright adds the headless flag itself.
    flags = [flag for flag in CHROMIUM_FLAGS if flag != "--headless"]
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=binary, args=flags)
        try:
            yield launched
        finally:
            launched.close()


def dashboard(browser: Browser, stack: Stack) -> Page:
    opened = browser.new_page(viewport={"width": 1400, "height": 1000})
    opened.set_default_timeout(SHOWN_MS)
    opened.goto(f"{stack.url}/dashboard")
    return opened


@pytest.fixture
def page(gateway: Stack, browser: Browser) -> Page:
    """The dashboard of the gateway that takes model changes."""
    return dashboard(browser, gateway)


def catalog_entry(gateway: Stack, name: str) -> dict[str, Any]:
    models = httpx.get(f"{gateway.url}/catalog", timeout=10).json()["models"]
    return next(model for model in models if model["name"] == name)


def upload_from_page(page: Page, path: Path, name: str, alias: str = "") -> None:
    page.set_input_files("#upload-file", path)
    page.fill("#upload-name", name)
    page.fill("#upload-alias", alias)
    page.click("#upload-form button")


def row(page: Page, ref: str, field: str) -> Any:
    return page.locator(f'[data-ref="{ref}"] [data-cat-field="{field}"]')


def choose_model(page: Page, ref: str) -> None:
    """Names the model in the try-it box and leaves the field, as a user does: the page
    fills in an example request."""
    page.fill("#try-body", "")
    page.fill("#try-ref", ref)
    page.press("#try-ref", "Tab")


def predict(page: Page, body: str) -> None:
    page.fill("#try-body", body)
    page.click("#try-form button")


def test_the_page_uploads_moves_an_alias_and_shows_the_catalog(
    gateway: Stack, page: Page, tmp_path: Path
) -> None:
    expect(page.locator('[data-catalog-model="model_a"] [data-cat-field="kind"]')).to_have_text(
        "code"
    )
    first, second = tmp_path / "doubler.onnx", tmp_path / "doubler-wide.onnx"
    first.write_bytes(doubler(width=2))
    second.write_bytes(doubler(width=4))
    sha_first = hashlib.sha256(first.read_bytes()).hexdigest()
    sha_second = hashlib.sha256(second.read_bytes()).hexdigest()

    upload_from_page(page, first, "doubler", alias="production")
    expect(page.locator("#upload-result")).to_have_text(
        f"uploaded doubler@1: {first.stat().st_size:,} B, sha256 {sha_first[:12]}, alias production"
    )
    expect(row(page, "doubler@1", "sha256")).to_have_text(sha_first[:12])
    expect(row(page, "doubler@1", "size")).to_have_text(f"{first.stat().st_size:,} B")
    expect(row(page, "doubler@1", "signature")).to_have_text(
        "x float32[batch, 2] → y float32[batch, 2]"
    )
    expect(row(page, "doubler@1", "replicas")).to_have_text("0")
    expect(row(page, "doubler@1", "live_workers")).to_have_text("0")
    created = catalog_entry(gateway, "doubler")["versions"][0]["created"]
    expect(row(page, "doubler@1", "created")).to_have_text(f"{created[:10]} {created[11:19]} UTC")

    upload_from_page(page, second, "doubler")
    expect(page.locator("#upload-result")).to_contain_text("uploaded doubler@2")
    expect(row(page, "doubler@2", "sha256")).to_have_text(sha_second[:12])
    expect(row(page, "doubler@2", "signature")).to_have_text(
        "x float32[batch, 4] → y float32[batch, 4]"
    )
    alias = page.locator('[data-catalog-model="doubler"] [data-alias="production"]')
    expect(alias).to_have_text("production → v1")

    # Move the alias from version 1 to 2 with the page's control.
    page.select_option("#alias-model", "doubler")
    page.fill("#alias-name", "production")
    page.select_option("#alias-version", "2")
    page.click("#alias-form button")
    expect(page.locator("#alias-result")).to_have_text("production now names doubler@2")
    expect(alias).to_have_text("production → v2")
    expect(row(page, "doubler@2", "aliases")).to_have_text("production")
    expect(row(page, "doubler@1", "aliases")).to_have_text("")

    # Deploy version 1 with two replicas, from the page.
    page.select_option("#deploy-model", "doubler")
    page.select_option("#deploy-version", "1")
    page.fill("#deploy-replicas", "2")
    page.click("#deploy-form button")
    expect(page.locator("#deploy-result")).to_have_text("doubler@1: 2 replica(s) wanted")
    expect(row(page, "doubler@1", "replicas")).to_have_text("2")
    expect(row(page, "doubler@2", "replicas")).to_have_text("0")

    entry = catalog_entry(gateway, "doubler")
    assert entry["kind"] == "onnx"
    assert entry["aliases"] == {"production": 2}
    assert [v["replicas"] for v in entry["versions"]] == [2, 0]
    assert [(v["version"], v["sha256"]) for v in entry["versions"]] == [
        (1, sha_first),
        (2, sha_second),
    ]
    assert page.locator('[data-catalog-model="doubler"] [data-ref]').count() == 2


def test_a_refused_upload_shows_the_gateways_reason(
    gateway: Stack, page: Page, tmp_path: Path
) -> None:
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"this is not an ONNX model")
    upload_from_page(page, junk, "junk")
    result = page.locator("#upload-result")
    expect(result).to_contain_text("HTTP 4")
    # The page shows the gateway's own message, which says what is wrong.
    message = result.text_content() or ""
    assert "junk" not in {m["name"] for m in httpx.get(f"{gateway.url}/catalog").json()["models"]}
    again = httpx.post(
        f"{gateway.url}/models/junk/versions",
        files={"file": ("junk.onnx", junk.read_bytes())},
        timeout=30,
    )
    assert again.status_code in (400, 413, 415, 422)
    assert again.json()["error"]["message"] in message, message


def test_try_it_predicts_with_a_class_model(gateway: Stack, page: Page) -> None:
    expect(page.locator('[data-catalog-model="model_a"]')).to_be_visible()
    choose_model(page, "model_a")
    # The example comes from model_a's request schema: a JSON object with its "data" field.
    expect(page.locator("#try-hint")).to_contain_text("an example request of model_a")
    assert set(json.loads(page.input_value("#try-body"))) == {"data"}

    predict(page, '{"data": "hi"}')
    expect(page.locator("#try-status")).to_contain_text("succeeded in")
    expect(page.locator("#try-result")).to_contain_text("Processed message: hi")
    assert json.loads(page.locator("#try-result").text_content() or "") == {
        "reply": "Processed message: hi"
    }


def test_try_it_shows_what_is_wrong(gateway: Stack, page: Page) -> None:
    expect(page.locator('[data-catalog-model="model_a"]')).to_be_visible()
    choose_model(page, "model_a")
    predict(page, '{"data": ')
    expect(page.locator("#try-status")).to_contain_text("the request is not JSON")

    choose_model(page, "no_such_model")
    predict(page, "{}")
    status = page.locator("#try-status")
    expect(status).to_contain_text("HTTP 404")
    expected = httpx.post(f"{gateway.url}/predict/no_such_model", json={}, timeout=10).json()
    expect(status).to_contain_text(expected["error"]["message"])
    expect(page.locator("#try-result")).to_have_text("")


def test_try_it_predicts_with_an_uploaded_model(gateway: Stack, page: Page, tmp_path: Path) -> None:
    model = tmp_path / "tripled.onnx"
    model.write_bytes(doubler(width=3))
    upload_from_page(page, model, "widths", alias="live")
    expect(page.locator("#upload-result")).to_contain_text("uploaded widths@1")
    worker = gateway.start_worker("onnx:widths@live")
    gateway.wait_live("widths@1", watch=[worker])
    expect(row(page, "widths@1", "live_workers")).to_have_text("1")

    choose_model(page, "widths@live")
    # The example has the request's field for x, with one example's 3 values (the batch
    # dimension is the worker's).
    expect(page.locator("#try-hint")).to_contain_text("an example request of widths@1")
    assert json.loads(page.input_value("#try-body")) == {"x": [0, 0, 0]}
    choose_model(page, "widths@1")
    expect(page.locator("#try-hint")).to_contain_text("an example request of widths@1")
    assert json.loads(page.input_value("#try-body")) == {"x": [0, 0, 0]}

    predict(page, '{"x": [1.5, -2, 0.25]}')
    expect(page.locator("#try-status")).to_contain_text("succeeded in")
    assert json.loads(page.locator("#try-result").text_content() or "") == {"y": [3, -4, 0.5]}


def test_changes_refused_by_the_gateway_say_how_to_allow_them(
    shared_stack: Stack, browser: Browser, tmp_path: Path
) -> None:
    # The shared gateway runs with the default INFERQ_MODEL_CHANGES: off.
    page = dashboard(browser, shared_stack)
    model = tmp_path / "doubler.onnx"
    model.write_bytes(doubler(width=2))
    upload_from_page(page, model, "refused")
    result = page.locator("#upload-result")
    expect(result).to_contain_text("Forbidden (HTTP 403)")
    expect(result).to_contain_text("INFERQ_MODEL_CHANGES=off")
    models = httpx.get(f"{shared_stack.url}/catalog", timeout=10).json()["models"]
    assert "refused" not in {m["name"] for m in models}


@pytest.fixture(scope="module")
def keyed_gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Stack, str]]:
    """A gateway that requires keys, model_a's worker, and a read and predict key."""
    for stack in make_stack(tmp_path_factory, INFERQ_AUTH="on"):
        with Catalog.open(stack.env["INFERQ_CATALOG_URL"]) as catalog:
            key = catalog.create_key("dashboard", ["read", "predict"]).secret
        stack.api_key = key
        stack.start_gateway()
        stack.start_worker("model_a")
        stack.wait_live("model_a")
        yield stack, key


def test_a_gateway_that_requires_keys_asks_the_page_for_one(
    keyed_gateway: tuple[Stack, str], browser: Browser
) -> None:
    """The page shows nothing but a key field; with a key it shows the models and predicts
    with them, and the key stays in the tab, not in the page's URL."""
    stack, key = keyed_gateway
    page = dashboard(browser, stack)
    expect(page.locator("#key-form")).to_be_visible()
    expect(page.locator('[data-catalog-model="model_a"]')).to_have_count(0)
    page.fill("#key-input", key)
    page.click("#key-form button")
    expect(page.locator("#key-form")).to_be_hidden()
    expect(page.locator('[data-catalog-model="model_a"]')).to_be_visible()
    choose_model(page, "model_a")
    # The page fills in an example (read with the key) first; the request typed comes after.
    expect(page.locator("#try-hint")).to_contain_text("an example request of model_a")
    predict(page, '{"data": "keyed"}')
    expect(page.locator("#try-status")).to_contain_text("succeeded in")
    expect(page.locator("#try-result")).to_contain_text("Processed message: keyed")
    assert key not in page.url
