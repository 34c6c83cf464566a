"""Which package may import which, read from the source (every import statement, at module
level or inside a function). The kernel (`inferq`) and the wire format (`proto`) are at the
bottom; the registry on them; the gateway and the workers on the registry, never on each
other; the entry points (`inferq_cli`) above the roles they start; the Python client
(`inferq_client`) on the kernel alone. Only the test suite and the load-testing harness import
the test suite or the harness."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
ROLES = {"inferq", "proto", "model_registry", "catalog", "workers", "api_service"}
ALLOWED: dict[str, set[str]] = {
    "proto": set(),
    "inferq": {"proto"},
    "model_registry": {"inferq", "proto"},
    # What exists (models, versions, aliases, files): beside the registry of who is alive.
    "catalog": {"inferq", "proto"},
    "workers": {"inferq", "model_registry", "catalog", "proto"},
    "api_service": {"inferq", "model_registry", "catalog", "proto"},
    # The Python client: the gateway's API from outside, with the kernel's errors.
    "inferq_client": {"inferq"},
    "inferq_cli": ROLES | {"inferq_client"},
    # A user's models, as their author writes them; the wire-format study.
    "examples": {"inferq", "proto", "workers"},
    "serialization_type_test": {"inferq", "proto"},
    "load_testing": ROLES | {"inferq_cli", "inferq_client", "examples", "tests"},
    "tests": ROLES
    | {"inferq_cli", "inferq_client", "examples", "serialization_type_test", "load_testing"},
}


def imports(package: str) -> dict[str, list[str]]:
    """The other first-party packages each of ``package``'s modules imports, as
    ``{imported package: ["path:line", ...]}``."""
    found: dict[str, list[str]] = {}
    for path in sorted((ROOT / package).rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue  # a relative import stays in its package
            for name in names:
                top = name.split(".")[0]
                if top in ALLOWED and top != package:
                    where = f"{path.relative_to(ROOT)}:{node.lineno}"
                    found.setdefault(top, []).append(where)
    return found


def test_every_package_of_the_repository_has_a_rule() -> None:
    packages = {
        d.name
        for d in ROOT.iterdir()
        if d.is_dir()
        and not d.name.startswith(".")
        and not d.name.endswith(".egg-info")
        and d.name not in ("build", "dist")
        and any(d.rglob("*.py"))
    }
    assert packages == set(ALLOWED)


@pytest.mark.parametrize("package", sorted(ALLOWED))
def test_a_package_imports_only_the_layers_below_it(package: str) -> None:
    forbidden = {
        imported: where
        for imported, where in imports(package).items()
        if imported not in ALLOWED[package]
    }
    assert forbidden == {}


def test_the_scan_sees_imports_inside_functions() -> None:
    # The CLI imports the gateway and the workers only in the commands that run them.
    assert {"api_service", "workers"} <= set(imports("inferq_cli"))
