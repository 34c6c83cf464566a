"""The committed generated protobuf modules match their .proto sources (`make proto`), the
gRPC stubs (``*_pb2_grpc.py``) of the files that define a service too."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SOURCES = [
    *sorted(ROOT.glob("proto/*.proto")),
    *sorted(ROOT.glob("examples/*.proto")),
    *sorted(ROOT.glob("tests/models/seed/*.proto")),
]


def test_generated_code_is_fresh(tmp_path: Path) -> None:
    for source in SOURCES:
        target = tmp_path / source.relative_to(ROOT)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(source, target)
    relative = [str(s.relative_to(ROOT)) for s in SOURCES]
    subprocess.run(
        [
            sys.executable,
            "-m",
            "grpc_tools.protoc",
            "-I",
            ".",
            "--python_out=.",
            "--pyi_out=.",
            *relative,
        ],
        cwd=tmp_path,
        check=True,
    )
    services = [p for p in relative if re.search(r"^service ", (ROOT / p).read_text(), re.M)]
    subprocess.run(
        [sys.executable, "-m", "grpc_tools.protoc", "-I", ".", "--grpc_python_out=.", *services],
        cwd=tmp_path,
        check=True,
    )
    stale = []
    for proto_file in relative:
        suffixes = ("_pb2.py", "_pb2.pyi", "_pb2_grpc.py") if proto_file in services else ()
        for suffix in suffixes or ("_pb2.py", "_pb2.pyi"):
            generated = proto_file.removesuffix(".proto") + suffix
            if (tmp_path / generated).read_bytes() != (ROOT / generated).read_bytes():
                stale.append(generated)
    assert not stale, f"stale generated code, run `make proto`: {stale}"
