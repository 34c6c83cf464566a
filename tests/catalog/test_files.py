"""The model file store: the same behaviours on a directory and on an S3 bucket. The bucket is
on moto's S3 server, a real process reached over HTTP by the real boto3 client."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest

from catalog.files import (
    DirectoryModelFiles,
    ModelFiles,
    S3ModelFiles,
    content_key,
    open_model_files,
)
from inferq.errors import InvalidModelFileKey, ModelFileNotFound, ModelStoreUnavailable
from load_testing.processes import free_port
from tests.catalog.s3_server import S3Server

MODEL = b"\x08\x07onnx-ish bytes\x00\xff" * 100


@pytest.fixture(scope="module")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    with S3Server(tmp_path_factory.mktemp("moto") / "moto.log") as server:
        yield server


def s3_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, endpoint: str) -> None:
    """boto3 reaches ``endpoint`` with dummy credentials, whatever the machine's AWS setup."""
    for name in ("AWS_ENDPOINT_URL_S3", "AWS_PROFILE", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ENDPOINT_URL", endpoint)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))


@pytest.fixture
def bucket(s3_server: S3Server, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> str:
    """A bucket of the test's own on the test server, which boto3 now reaches."""
    s3_env(monkeypatch, tmp_path, s3_server.endpoint)
    name = f"test-{os.urandom(4).hex()}"
    boto3.client("s3").create_bucket(Bucket=name)
    return name


@pytest.fixture(params=["directory", "s3"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> ModelFiles:
    if request.param == "directory":
        return open_model_files(str(tmp_path / "store" / "models"))
    return open_model_files(f"s3://{request.getfixturevalue('bucket')}/models/v1")


def stored(store: ModelFiles) -> list[str]:
    """Every object the store holds, read behind its back (temporary files included)."""
    if isinstance(store, DirectoryModelFiles):
        if not store.root.exists():
            return []
        return sorted(str(p.relative_to(store.root)) for p in store.root.rglob("*") if p.is_file())
    assert isinstance(store, S3ModelFiles)
    listing = store.client.list_objects_v2(Bucket=store.bucket)
    return sorted(o["Key"] for o in listing.get("Contents", []))


def test_bytes_round_trip_under_their_sha256(store: ModelFiles) -> None:
    key = store.put(MODEL)

    assert key == f"sha256/{hashlib.sha256(MODEL).hexdigest()}.onnx"
    assert store.get(key) == MODEL
    assert store.exists(key)


def test_a_given_sha256_names_the_same_key(store: ModelFiles) -> None:
    key = store.put(MODEL, hashlib.sha256(MODEL).hexdigest())

    assert key == content_key(MODEL)
    assert store.get(key) == MODEL


def test_the_same_file_is_stored_once(store: ModelFiles) -> None:
    first = store.put(MODEL)
    again = store.put(MODEL)
    other = store.put(MODEL + b"!")

    assert first == again != other
    prefix = "models/v1/" if isinstance(store, S3ModelFiles) else ""
    assert stored(store) == sorted([prefix + first, prefix + other])


def test_a_missing_key_is_not_found(store: ModelFiles, tmp_path: Path) -> None:
    key = content_key(b"never stored")

    with pytest.raises(ModelFileNotFound, match=key):
        store.get(key)
    with pytest.raises(ModelFileNotFound, match=key):
        store.local_path(key, tmp_path / "cache")
    assert not store.exists(key)
    store.delete(key)  # deleting what is not there is not an error


def test_a_deleted_file_is_gone(store: ModelFiles) -> None:
    key = store.put(MODEL)
    store.delete(key)

    assert not store.exists(key)
    assert stored(store) == []
    with pytest.raises(ModelFileNotFound):
        store.get(key)


@pytest.mark.parametrize(
    "key", ["../secret.onnx", "/secret.onnx", "sha256/../../secret.onnx", "a//b", "", "./x", "a\\b"]
)
def test_a_key_cannot_escape_the_store(store: ModelFiles, key: str, tmp_path: Path) -> None:
    # A file just outside the store, where "../secret.onnx" would point.
    if isinstance(store, DirectoryModelFiles):
        store.root.mkdir(parents=True)
        (store.root.parent / "secret.onnx").write_bytes(b"secret")
    else:
        assert isinstance(store, S3ModelFiles)
        store.client.put_object(Bucket=store.bucket, Key="models/secret.onnx", Body=b"secret")

    for call in (store.get, store.exists, store.delete):
        with pytest.raises(InvalidModelFileKey):
            call(key)
    with pytest.raises(InvalidModelFileKey):
        store.local_path(key, tmp_path / "cache")


def test_local_path_is_a_file_onnxruntime_can_open(store: ModelFiles, tmp_path: Path) -> None:
    key = store.put(MODEL)

    path = store.local_path(key, tmp_path / "cache")

    assert path.is_absolute()
    assert path.read_bytes() == MODEL
    assert store.local_path(key, tmp_path / "cache") == path


def test_local_path_downloads_once(bucket: str, tmp_path: Path) -> None:
    store = open_model_files(f"s3://{bucket}/models")
    assert isinstance(store, S3ModelFiles)
    key = store.put(MODEL)
    downloads: list[str] = []
    store.client.meta.events.register(
        "before-parameter-build.s3.GetObject", lambda params, **_: downloads.append(params["Key"])
    )
    cache = tmp_path / "cache"

    first = store.local_path(key, cache)
    second = store.local_path(key, cache)

    assert downloads == [f"models/{key}"]
    assert first == second == (cache / key).resolve()
    assert sorted(p.name for p in cache.rglob("*") if p.is_file()) == [Path(key).name]


def test_the_directory_is_made_on_first_write(tmp_path: Path) -> None:
    root = tmp_path / "a" / "b"
    store = open_model_files(str(root))

    assert not root.exists()
    key = store.put(MODEL)
    assert (root / key).read_bytes() == MODEL


def test_a_failed_write_leaves_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = open_model_files(str(tmp_path / "store"))

    def fail(src: str, dst: str) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", fail)
    with pytest.raises(OSError, match="disk full"):
        store.put(MODEL)
    monkeypatch.undo()

    assert stored(store) == []
    assert not store.exists(content_key(MODEL))


def test_a_missing_bucket_is_named(bucket: str) -> None:
    url = f"s3://no-such-{bucket}/models"
    store = open_model_files(url)

    for call in (store.check, lambda: store.put(MODEL), lambda: store.get(content_key(MODEL))):
        with pytest.raises(ModelStoreUnavailable, match="does not exist") as error:
            call()
        assert url in error.value.message
    with pytest.raises(ModelStoreUnavailable):
        store.exists(content_key(MODEL))  # not a plain "no such file"


def test_an_unreachable_endpoint_is_named(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    s3_env(monkeypatch, tmp_path, f"http://127.0.0.1:{free_port()}")
    store = open_model_files("s3://models/v1")

    with pytest.raises(ModelStoreUnavailable, match="cannot be reached") as error:
        store.check()
    assert "s3://models/v1" in error.value.message


def test_urls_name_the_backend(tmp_path: Path) -> None:
    s3 = open_model_files("s3://bucket/a/b/")
    assert isinstance(s3, S3ModelFiles)
    assert (s3.bucket, s3.prefix) == ("bucket", "a/b")
    bare = open_model_files("s3://bucket")
    assert isinstance(bare, S3ModelFiles) and bare.prefix == ""
    directory = open_model_files(str(tmp_path))
    assert isinstance(directory, DirectoryModelFiles) and directory.root == tmp_path
    for url in ("gs://bucket/x", "s3:///x"):
        with pytest.raises(ValueError, match="model store URL"):
            open_model_files(url)
