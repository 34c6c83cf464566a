"""docker-compose.yml and the Dockerfile, without Docker: the compose file, interpolated as
Compose does with the variables docs/deploy.md asks for, is valid against the Compose
Specification's JSON Schema (tests/deploy/schemas/README.md says which), and what it says
agrees with the code it runs: settings names and values, CLI flags, probe paths and ports,
stop graces against the drain graces, one worker service per built-in model, volumes, ports."""

from __future__ import annotations

import copy
import json
import os
import re
import shlex
import shutil
import subprocess
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import jsonschema
import pytest
import yaml
from pydantic_settings import BaseSettings
from sqlalchemy.engine import make_url

from inferq import settings as settings_module
from inferq.settings import GatewaySettings, HostSettings, WorkerSettings
from inferq_cli.main import parser
from workers.loader import BUILTIN_MODELS

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
SCHEMA = Path(__file__).parent / "schemas" / "compose-spec.json"

#: What the .env of docs/deploy.md holds (URL-safe values).
DOT_ENV = {
    "RABBITMQ_PASSWORD": "rabbit0123456789",
    "REDIS_PASSWORD": "redis0123456789",
    "POSTGRES_PASSWORD": "postgres0123456789",
    "MINIO_ROOT_PASSWORD": "minio0123456789",
}
#: Host ports that `make up` leaves in use: RabbitMQ (and its UI), Redis, the gateway.
MAKE_UP_PORTS = {5672, 15672, 6379, 8000, 8001}
#: What the model host adds to the workers' grace before it kills one (inferq_cli/host.py).
HOST_EXTRA_GRACE_S = 5.0

# -- reading the file as Compose does --------------------------------------------------------

_VARIABLE = re.compile(
    r"\$(?:(?P<escaped>\$)|\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?])(?P<arg>[^}]*))?\})"
)


class MissingVariable(Exception):
    pass


def interpolate(value: Any, env: Mapping[str, str]) -> Any:
    """Compose's interpolation: ``$$``, ``${VAR}``, ``${VAR:-default}``, ``${VAR-default}``,
    ``${VAR:?error}``, ``${VAR?error}``, in every string of the document."""
    if isinstance(value, dict):
        return {k: interpolate(v, env) for k, v in value.items()}
    if isinstance(value, list):
        return [interpolate(v, env) for v in value]
    if not isinstance(value, str):
        return value

    def one(match: re.Match[str]) -> str:
        if match["escaped"]:
            return "$"
        name, op, arg = match["name"], match["op"], match["arg"]
        present = name in env and (env[name] != "" or not (op or "").startswith(":"))
        if present:
            return env[name]
        if op and op.endswith("?"):
            raise MissingVariable(f"{name}: {arg}")
        return arg if op else ""

    return _VARIABLE.sub(one, value)


def load(env: Mapping[str, str] = DOT_ENV) -> dict[str, Any]:
    document = yaml.safe_load(COMPOSE.read_text())  # resolves anchors and << merge keys
    result: dict[str, Any] = interpolate(document, env)
    return result


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return load()


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    result: dict[str, dict[str, Any]] = compose["services"]
    return result


def environment(service: Mapping[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {k: str(v) for k, v in env.items()}


def inferq_services(services: Mapping[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    """The services that run the inferq image's code."""
    for name, service in services.items():
        if "INFERQ_AMQP_URL" in environment(service):
            yield name, service


def command(service: Mapping[str, Any]) -> list[str]:
    """The service's command as argv (Compose splits a string command as a shell would)."""
    value = service.get("command") or []
    return shlex.split(value) if isinstance(value, str) else [str(v) for v in value]


def workers(services: Mapping[str, Any]) -> dict[str, str]:
    """Worker service -> the TARGET of its `inferq worker TARGET`."""
    found = {
        name: command(service)[2]
        for name, service in services.items()
        if command(service)[:2] == ["inferq", "worker"]
    }
    assert found, "no service runs `inferq worker TARGET`"
    return found


def seconds(duration: str) -> float:
    """A Compose duration (``1m30s``, ``45s``, ``500ms``) in seconds."""
    units = {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
    parts = re.findall(r"(\d+(?:\.\d+)?)(us|ms|s|m|h)", duration)
    assert parts and "".join(n + u for n, u in parts) == duration, duration
    return sum(float(n) * units[u] for n, u in parts)


def published(service: Mapping[str, Any]) -> list[tuple[str, int, int]]:
    """(host address, host port, container port) of each published port."""
    result = []
    for port in service.get("ports", []):
        if isinstance(port, dict):
            host_ip, host, target = port.get("host_ip", ""), port["published"], port["target"]
        else:
            fields = str(port).split("/")[0].rsplit(":", 2)
            assert len(fields) == 3, f"{port!r}: name the host address (127.0.0.1:HOST:PORT)"
            host_ip, host, target = fields
        result.append((str(host_ip), int(host), int(target)))
    return result


def role_settings(
    cls: type[BaseSettings], service: Mapping[str, Any], monkeypatch: pytest.MonkeyPatch
) -> Any:
    """``cls`` as the service's process builds it: from its environment alone."""
    with monkeypatch.context() as patch:
        for name in [n for n in os.environ if n.startswith("INFERQ_")]:
            patch.delenv(name)
        for name, value in environment(service).items():
            patch.setenv(name, value)
        return cls(_env_file=None)  # type: ignore[call-arg]


def setting_names() -> set[str]:
    """Every environment variable a settings class of inferq/settings.py reads."""
    names = set()
    for cls in vars(settings_module).values():
        if isinstance(cls, type) and issubclass(cls, BaseSettings) and cls is not BaseSettings:
            prefix = cls.model_config.get("env_prefix", "")
            names |= {f"{prefix}{field}".upper() for field in cls.model_fields}
    return names


# -- the schema --------------------------------------------------------------------------------


def validator() -> jsonschema.protocols.Validator:
    schema = json.loads(SCHEMA.read_text())
    cls = jsonschema.validators.validator_for(schema)
    cls.check_schema(schema)
    return cls(schema, format_checker=cls.FORMAT_CHECKER)


def test_compose_file_is_valid_against_the_compose_specification(
    compose: dict[str, Any],
) -> None:
    errors = [
        f"{'/'.join(map(str, e.absolute_path))}: {e.message}"
        for e in validator().iter_errors(compose)
    ]
    assert errors == []


def test_the_schema_catches_a_misspelt_key(compose: dict[str, Any]) -> None:
    broken = copy.deepcopy(compose)
    broken["services"]["gateway"]["stop_grace_periode"] = broken["services"]["gateway"].pop(
        "stop_grace_period"
    )
    assert any("stop_grace_periode" in e.message for e in validator().iter_errors(broken))


def compose_cli() -> list[str] | None:
    """A Docker Compose v2 command line, where one is installed (it needs no daemon for
    `config`); None elsewhere, as on the CI machine."""
    candidates = [["docker", "compose"], ["docker-compose"]]
    for argv in candidates:
        if shutil.which(argv[0]) is None:
            continue
        version = subprocess.run([*argv, "version", "--short"], capture_output=True, text=True)
        if version.returncode == 0 and version.stdout.strip().lstrip("v").startswith("2."):
            return argv
    return None


@pytest.mark.skipif(compose_cli() is None, reason="no Docker Compose v2 here")
def test_docker_compose_itself_accepts_the_file() -> None:
    argv = compose_cli()
    assert argv is not None
    env = {**os.environ, **DOT_ENV}
    run = subprocess.run(
        [*argv, "-f", str(COMPOSE), "--profile", "bench", "config", "-q"],
        capture_output=True,
        text=True,
        env=env,
    )
    assert run.returncode == 0, run.stderr


# -- credentials and ports ---------------------------------------------------------------------


def test_no_credential_has_a_default() -> None:
    text = COMPOSE.read_text()
    assert "guest" not in text
    for name in DOT_ENV:
        uses = re.findall(r"\$\{" + name + r"(:?[-?])?", text)
        assert uses and all(op == ":?" for op in uses), f"{name} must be ${{{name}:?...}}"
        with pytest.raises(MissingVariable, match=name):
            load({k: v for k, v in DOT_ENV.items() if k != name})


def test_published_ports_are_on_loopback_and_beside_make_up(
    services: dict[str, dict[str, Any]],
) -> None:
    ports = {name: published(service) for name, service in services.items()}
    for name, mapping in ports.items():
        for host_ip, host, _ in mapping:
            assert host_ip == "127.0.0.1", (
                f"{name} publishes :{host} on {host_ip or 'every address'}"
            )
            assert host not in MAKE_UP_PORTS, f"{name}: host port {host} is `make up`'s"
    hosts = [host for mapping in ports.values() for _, host, _ in mapping]
    assert len(hosts) == len(set(hosts))
    # The broker's AMQP port and Redis are for the compose network only.
    assert all(target != 5672 for _, _, target in ports["rabbitmq"])
    assert ports["redis"] == []


def test_the_gateway_publishes_its_http_and_grpc_ports(
    services: dict[str, dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    gateway = services["gateway"]
    settings = role_settings(GatewaySettings, gateway, monkeypatch)
    args = parser().parse_args(command(gateway)[1:])
    port = args.port or settings.port
    targets = {target for _, _, target in published(gateway)}
    assert {port, settings.grpc_port} <= targets


# -- settings ------------------------------------------------------------------------------------


def test_every_inferq_variable_is_a_setting(services: dict[str, dict[str, Any]]) -> None:
    known = setting_names()
    for name, service in services.items():
        unknown = {v for v in environment(service) if v.startswith("INFERQ_")} - known
        assert not unknown, f"{name} sets {sorted(unknown)}, which no settings class reads"


def test_every_role_accepts_its_settings(
    services: dict[str, dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    for _, service in inferq_services(services):
        for cls in (GatewaySettings, WorkerSettings, HostSettings, settings_module.LogSettings):
            role_settings(cls, service, monkeypatch)  # raises on a value the role refuses


def test_the_gateway_requires_keys_on_its_open_address(
    services: dict[str, dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    from api_service.core.auth import open_bind_refusal

    gateway = services["gateway"]
    args = parser().parse_args(command(gateway)[1:])
    settings = role_settings(GatewaySettings, gateway, monkeypatch)
    settings = settings.model_copy(update={"host": args.host or settings.host})
    assert settings.auth == "on"
    # With auth on, the gateway starts without reading the catalog for a key.
    assert open_bind_refusal(settings, "postgresql+psycopg://nowhere.invalid/db") is None


def test_catalog_and_model_store_are_the_stacks_own(
    services: dict[str, dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    assert "psycopg" in (ROOT / "requirements.txt").read_text()
    bucket_maker = " ".join(command(services["minio-init"]))
    for name, service in inferq_services(services):
        settings = role_settings(HostSettings, service, monkeypatch)
        url = make_url(settings.catalog_url)
        assert url.drivername == "postgresql+psycopg", name
        assert url.host in services and "postgres" in services[url.host]["image"]
        assert url.password == DOT_ENV["POSTGRES_PASSWORD"]
        assert settings.model_store_url.startswith("s3://"), name
        bucket = settings.model_store_url.removeprefix("s3://").split("/")[0]
        assert f'"{bucket}"' in bucket_maker
        endpoint = urlsplit(environment(service)["AWS_ENDPOINT_URL"]).hostname
        assert endpoint in services and "minio" in services[endpoint]["image"]
    for name in ("gateway", "host"):
        conditions = {k: v["condition"] for k, v in services[name]["depends_on"].items()}
        assert conditions["minio-init"] == "service_completed_successfully"
        assert conditions["postgres"] == "service_healthy"
    assert services["minio-init"]["restart"] == "no"


# -- image ---------------------------------------------------------------------------------------


def test_the_image_is_built_once_and_reused(services: dict[str, dict[str, Any]]) -> None:
    builders = [name for name, service in services.items() if "build" in service]
    assert builders == ["gateway"]
    image = services["gateway"]["image"]
    assert services["gateway"]["pull_policy"] == "build"
    users = dict(inferq_services(services))
    assert set(workers(services)) | {"gateway", "host", "minio-init"} <= set(users)
    for name, service in users.items():
        assert service["image"] == image, name
        if name != "gateway":
            assert service["pull_policy"] == "never", f"{name} would pull {image}"


# -- workers and probes --------------------------------------------------------------------------


def test_every_builtin_model_has_a_worker_service(services: dict[str, dict[str, Any]]) -> None:
    assert set(BUILTIN_MODELS) <= set(workers(services).values())


def test_worker_healthchecks_run_the_workers_own_check(
    services: dict[str, dict[str, Any]],
) -> None:
    for name, target in workers(services).items():
        service = services[name]
        args = parser().parse_args(command(service)[1:])
        assert args.target == target and not args.check
        test = service["healthcheck"]["test"]
        assert test[0] == "CMD" and test[1] == "inferq", name
        check = parser().parse_args(test[2:])
        assert (check.command, check.target, check.check) == ("worker", target, True), name
        conditions = {k: v["condition"] for k, v in service["depends_on"].items()}
        assert conditions == {"rabbitmq": "service_healthy", "redis": "service_healthy"}


def test_worker_healthcheck_is_given_a_heartbeat_to_find(
    services: dict[str, dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in workers(services):
        health = services[name]["healthcheck"]
        settings = role_settings(WorkerSettings, services[name], monkeypatch)
        assert settings.health_dir == "/tmp"  # in the container, writable by its user
        # A failing probe must not be a slow start: the first heartbeat falls in start_period.
        assert seconds(health["start_period"]) >= 10 * settings.heartbeat_interval_s


def test_the_gateway_healthcheck_asks_its_readiness_route(
    services: dict[str, dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    from api_service.routes.health import router

    gateway = services["gateway"]
    settings = role_settings(GatewaySettings, gateway, monkeypatch)
    port = parser().parse_args(command(gateway)[1:]).port or settings.port
    probe = " ".join(gateway["healthcheck"]["test"])
    match = re.search(r"http://(127\.0\.0\.1|localhost):(\d+)(/[\w/]*)", probe)
    assert match, probe
    assert int(match[2]) == port
    assert match[3] in {"/readyz", "/healthz"}
    assert match[3] in {getattr(route, "path", None) for route in router.routes}


def test_stop_graces_outlast_the_drains(
    services: dict[str, dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    gateway = role_settings(GatewaySettings, services["gateway"], monkeypatch)
    assert gateway.shutdown_grace_s > gateway.max_wait_s
    gateway_stop = seconds(services["gateway"]["stop_grace_period"])
    assert gateway_stop > max(gateway.shutdown_grace_s, gateway.grpc_grace_s)
    for name in workers(services):
        worker = role_settings(WorkerSettings, services[name], monkeypatch)
        assert seconds(services[name]["stop_grace_period"]) > worker.grace_period_s, name
    host_worker = role_settings(WorkerSettings, services["host"], monkeypatch)
    host_stop = seconds(services["host"]["stop_grace_period"])
    assert host_stop > host_worker.grace_period_s + HOST_EXTRA_GRACE_S
    for name, service in inferq_services(services):
        assert service.get("init") is True, f"{name}: PID 1 must pass SIGTERM on"


# -- state ---------------------------------------------------------------------------------------


def test_state_lives_in_named_volumes(compose: dict[str, Any]) -> None:
    services = compose["services"]
    where = {
        "rabbitmq": "/var/lib/rabbitmq",
        "redis": "/data",
        "postgres": "/var/lib/postgresql/data",
        "minio": "/data",
    }
    for name, path in where.items():
        mounts = dict(reversed(m.split(":")[:2]) for m in services[name]["volumes"])
        assert mounts.get(path) in compose["volumes"], f"{name}: {path} is not a named volume"


def test_rabbitmq_finds_its_data_again(services: dict[str, dict[str, Any]]) -> None:
    rabbitmq = services["rabbitmq"]
    assert environment(rabbitmq)["RABBITMQ_NODENAME"] == f"rabbit@{rabbitmq['hostname']}"
    assert environment(rabbitmq)["RABBITMQ_DEFAULT_USER"] != "guest"


def test_redis_keeps_an_append_only_file(services: dict[str, dict[str, Any]]) -> None:
    argv = command(services["redis"])
    assert argv[0] == "redis-server"
    assert argv[argv.index("--appendonly") + 1] == "yes"
    assert argv[argv.index("--requirepass") + 1] == DOT_ENV["REDIS_PASSWORD"]


# -- the Dockerfile ------------------------------------------------------------------------------


def dockerfile() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of each instruction, continuation lines joined."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    lines = [line.strip() for line in text.splitlines()]
    return [
        (line.split(None, 1)[0].upper(), line.split(None, 1)[1])
        for line in lines
        if line and not line.startswith("#")
    ]


def test_the_image_runs_as_a_numeric_non_root_user() -> None:
    users = [args for op, args in dockerfile() if op == "USER"]
    assert users, "no USER: the image runs as root"
    user, _, group = users[-1].partition(":")
    assert user.isdigit() and int(user) != 0
    assert not group or (group.isdigit() and int(group) != 0)


def test_the_image_makes_big_mlp_where_the_installed_worker_reads_it() -> None:
    # .dockerignore keeps big_mlp.onnx out of the context: the build must make it.
    ignore = DOCKERIGNORE.read_text().splitlines()
    assert "**/*.onnx" in ignore and "!workers/models/weights/big_mlp.onnx" not in ignore
    steps = dockerfile()
    runs = [args for op, args in steps if op == "RUN"]
    install = next(i for i, args in enumerate(runs) if re.search(r"pip install --no-deps \.", args))
    make = next(i for i, args in enumerate(runs) if "workers.models.make_big_mlp" in args)
    assert make > install, "big_mlp must be made after the package is installed"
    # -P: the installed package's folder, not the copy in WORKDIR (which `inferq` does not import).
    assert re.search(r"python -P -m workers\.models\.make_big_mlp", runs[make])
    assert "BigMLP.weights" in runs[make]  # and the build fails if the worker would not find it
    user_at = max(i for i, (op, _) in enumerate(steps) if op == "USER")
    assert user_at > max(i for i, (op, _) in enumerate(steps) if op == "RUN")


def test_the_build_context_leaves_local_state_out() -> None:
    ignore = DOCKERIGNORE.read_text().splitlines()
    assert {".env", "**/.inferq", ".venv", ".git"} <= set(ignore)
