"""Where model files live: a directory (the default) or an S3-compatible bucket, behind one
small interface. Files are content-addressed (``sha256/<hex>.onnx``), so the same file is
stored once however often it is uploaded, and a key names its bytes forever.

``open_model_files(settings.model_store_url)`` picks the backend from the URL: a path is a
directory, created on first use; ``s3://bucket/prefix`` is a bucket, reached through boto3,
which reads the endpoint (``AWS_ENDPOINT_URL`` / ``AWS_ENDPOINT_URL_S3``) and the credentials
itself. A key never leaves its directory or prefix: one with ``..``, a leading slash or any
character outside ``[A-Za-z0-9._-/]`` is refused."""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import tempfile
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError

from inferq.errors import InvalidModelFileKey, ModelFileNotFound, ModelStoreUnavailable

_SEGMENT = re.compile(r"[A-Za-z0-9._-]+")


def content_key(data: bytes) -> str:
    """The key a file is stored under: its sha256."""
    return sha256_key(hashlib.sha256(data).hexdigest())


def sha256_key(hexdigest: str) -> str:
    """The key of the file whose sha256 is ``hexdigest`` (for a caller that has it already:
    hashing a large model again costs ~2 ms a megabyte)."""
    return f"sha256/{hexdigest}.onnx"


def check_key(key: str) -> str:
    """``key`` if it is a relative path of plain segments; else `InvalidModelFileKey`."""
    segments = key.split("/")
    if not key or not all(_SEGMENT.fullmatch(s) and s not in (".", "..") for s in segments):
        raise InvalidModelFileKey(
            f"invalid model file key {key!r}: a key is a relative path of segments made of "
            "letters, digits, '.', '_' and '-', with no '..' and no leading slash"
        )
    return key


class ModelFiles(ABC):
    """A store of model files. ``url`` is what the store was opened from, for messages."""

    url: str

    def put(self, data: bytes, sha256: str | None = None) -> str:
        """Stores ``data`` unless the same bytes are already there; returns its key.
        ``sha256``: the data's, if the caller computed it."""
        key = sha256_key(sha256) if sha256 is not None else content_key(data)
        if not self.exists(key):
            self._write(key, data)
        return key

    @abstractmethod
    def get(self, key: str) -> bytes:
        """The file's bytes; `ModelFileNotFound` if there is none under ``key``."""

    @abstractmethod
    def exists(self, key: str) -> bool: ...

    @abstractmethod
    def delete(self, key: str) -> None:
        """Removes the file; deleting a missing key is not an error."""

    @abstractmethod
    def local_path(self, key: str, cache_dir: Path) -> Path:
        """A path on this machine to the file, for ONNX Runtime to load: a remote file is
        downloaded into ``cache_dir`` once, then served from there."""

    @abstractmethod
    def check(self) -> None:
        """Raises `ModelStoreUnavailable` unless the store can be used (to fail at start)."""

    @abstractmethod
    def _write(self, key: str, data: bytes) -> None: ...

    def _not_found(self, key: str) -> ModelFileNotFound:
        return ModelFileNotFound(f"no model file {key!r} in the model store {self.url}")


def _write_atomically(path: Path, write: Callable[[IO[bytes]], object]) -> None:
    """Calls ``write(file)`` on a temporary file beside ``path``, then renames it into place,
    so a reader sees the whole file or none."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class DirectoryModelFiles(ModelFiles):
    """Files under a directory, created on first write."""

    def __init__(self, root: Path, url: str | None = None) -> None:
        self.root = root
        self.url = url or str(root)

    def _path(self, key: str) -> Path:
        return self.root / check_key(key)

    def _write(self, key: str, data: bytes) -> None:
        _write_atomically(self._path(key), lambda f: f.write(data))

    def get(self, key: str) -> bytes:
        try:
            return self._path(key).read_bytes()
        except FileNotFoundError:
            raise self._not_found(key) from None

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    def delete(self, key: str) -> None:
        self._path(key).unlink(missing_ok=True)

    def local_path(self, key: str, cache_dir: Path) -> Path:
        """The stored file itself (it is already local); ``cache_dir`` is not used."""
        path = self._path(key)
        if not path.is_file():
            raise self._not_found(key)
        return path.resolve()

    def check(self) -> None:
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise ModelStoreUnavailable(f"the model store {self.url} cannot be created: {e}") from e


class S3ModelFiles(ModelFiles):
    """Files in an S3-compatible bucket, under a prefix. boto3 finds the endpoint and the
    credentials; the bucket must exist (it is not created here)."""

    def __init__(self, bucket: str, prefix: str, url: str, client: Any = None) -> None:
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.url = url
        self.client = client or boto3.client(
            "s3", config=Config(connect_timeout=5, retries={"mode": "standard", "max_attempts": 3})
        )

    def _name(self, key: str) -> str:
        check_key(key)
        return f"{self.prefix}/{key}" if self.prefix else key

    @contextmanager
    def _errors(self, key: str | None = None) -> Iterator[None]:
        """Translates boto3's errors into the store's."""
        endpoint = self.client.meta.endpoint_url
        try:
            yield
        except ClientError as e:
            code = e.response.get("Error", {}).get("Code", "")
            if code == "NoSuchBucket" or (key is None and code in ("404", "NotFound")):
                raise ModelStoreUnavailable(
                    f"the model store {self.url}: bucket {self.bucket!r} does not exist at "
                    f"{endpoint}; create it, or point INFERQ_MODEL_STORE_URL at one that does"
                ) from e
            if key is not None and code in ("NoSuchKey", "404", "NotFound"):
                raise self._not_found(key) from e
            raise ModelStoreUnavailable(f"the model store {self.url} refused: {e}") from e
        except NoCredentialsError as e:
            raise ModelStoreUnavailable(
                f"the model store {self.url}: no S3 credentials found (set AWS_ACCESS_KEY_ID "
                "and AWS_SECRET_ACCESS_KEY, or another source boto3 reads)"
            ) from e
        except BotoCoreError as e:
            raise ModelStoreUnavailable(
                f"the model store {self.url} cannot be reached at {endpoint}: {e}"
            ) from e

    def check(self) -> None:
        with self._errors():
            self.client.head_bucket(Bucket=self.bucket)

    def _write(self, key: str, data: bytes) -> None:
        with self._errors(key):
            self.client.put_object(Bucket=self.bucket, Key=self._name(key), Body=data)

    def get(self, key: str) -> bytes:
        with self._errors(key):
            body = self.client.get_object(Bucket=self.bucket, Key=self._name(key))["Body"]
            with body:
                return bytes(body.read())

    def exists(self, key: str) -> bool:
        name = self._name(key)
        try:
            with self._errors(key):
                self.client.head_object(Bucket=self.bucket, Key=name)
        except ModelFileNotFound:
            self.check()  # a missing bucket also answers 404 to HEAD: say which it is
            return False
        return True

    def delete(self, key: str) -> None:
        with self._errors(key):
            self.client.delete_object(Bucket=self.bucket, Key=self._name(key))

    def local_path(self, key: str, cache_dir: Path) -> Path:
        path = cache_dir / check_key(key)
        if not path.is_file():
            with self._errors(key):
                body = self.client.get_object(Bucket=self.bucket, Key=self._name(key))["Body"]
                with body:
                    _write_atomically(path, lambda f: shutil.copyfileobj(body, f))
        return path.resolve()


def open_model_files(url: str) -> ModelFiles:
    """The store ``url`` names: ``s3://bucket[/prefix]`` or a directory path. Does no I/O;
    call ``check()`` to fail early when the store cannot be used."""
    if url.startswith("s3://"):
        bucket, _, prefix = url.removeprefix("s3://").partition("/")
        if not bucket:
            raise ValueError(f"model store URL {url!r} names no bucket: use s3://bucket/prefix")
        return S3ModelFiles(bucket, prefix, url)
    if "://" in url:
        raise ValueError(f"model store URL {url!r} is neither a directory nor s3://bucket/prefix")
    return DirectoryModelFiles(Path(url), url)
