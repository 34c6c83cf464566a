"""The Kubernetes manifests (deploy/kubernetes), without a cluster: every overlay rendered by
``kubectl kustomize``, each object validated against the Kubernetes schemas
(kubernetes-validate, strict: no unknown field) or KEDA's CRDs (cloudcoil's models generated
from them), then held to the code: probes on routes and ports the gateway serves, grace
periods longer than the processes' own, a worker and a scaler on the right queue for every
built-in model, and only settings that exist."""

from __future__ import annotations

import base64
import functools
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from unittest import mock
from urllib.parse import urlsplit

import kubernetes_validate
import pytest
import yaml
from cloudcoil.models.keda.v1alpha1 import ScaledObject, TriggerAuthentication
from pydantic import BaseModel
from pydantic_settings import BaseSettings
from starlette.routing import Match

from api_service.app import create_fastapi_app
from api_service.core.auth import required_scope
from inferq.names import Names
from inferq.settings import (
    CatalogSettings,
    CommonSettings,
    GatewaySettings,
    HostSettings,
    LogSettings,
    WorkerSettings,
)
from workers.loader import BUILTIN_MODELS, load_model_class
from workers.runtime import Worker

ROOT = Path(__file__).resolve().parents[2]
KUBERNETES = ROOT / "deploy" / "kubernetes"
OVERLAYS = sorted(p.name for p in (KUBERNETES / "overlays").iterdir() if p.is_dir())
#: The schemas of this Kubernetes release (bundled by kubernetes-validate, which has 1.25 to
#: 1.37): the oldest release still maintained upstream when these manifests were written.
KUBERNETES_VERSION = "1.32.0"
#: The user of the image (the Dockerfile's USER).
IMAGE_UID = 10001
#: Parameters KEDA's rabbitmq scaler reads (keda.sh/docs/2.16/scalers/rabbitmq-queue).
RABBITMQ_TRIGGER_PARAMETERS = {
    "host", "protocol", "mode", "value", "activationValue", "queueName", "vhostName",
    "useRegex", "excludeUnacknowledged", "pageSize", "operation", "timeout", "unsafeSsl",
}  # fmt: skip
KEDA_MODELS: dict[str, type[BaseModel]] = {
    "ScaledObject": ScaledObject,
    "TriggerAuthentication": TriggerAuthentication,
}
SETTINGS_CLASSES: list[type[BaseSettings]] = [
    CommonSettings, GatewaySettings, WorkerSettings, CatalogSettings, HostSettings, LogSettings,
]  # fmt: skip
PLACEHOLDER = "inferq.dev/placeholder"

pytestmark = pytest.mark.skipif(
    shutil.which("kubectl") is None,
    reason="kubectl is not installed: it renders the kustomizations (`kubectl kustomize`)",
)

Obj = dict[str, Any]


@functools.cache
def render(path: str) -> tuple[Obj, ...]:
    out = subprocess.run(
        ["kubectl", "kustomize", str(KUBERNETES / path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, f"kubectl kustomize {path}: {out.stderr}"
    return tuple(doc for doc in yaml.safe_load_all(out.stdout) if doc)


@pytest.fixture(params=OVERLAYS)
def overlay(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def objects(overlay: str) -> tuple[Obj, ...]:
    return render(f"overlays/{overlay}")


def of_kind(objects: tuple[Obj, ...], kind: str) -> dict[str, Obj]:
    return {o["metadata"]["name"]: o for o in objects if o["kind"] == kind}


def pod_templates(objects: tuple[Obj, ...]) -> Iterator[tuple[Obj, Obj]]:
    """(workload, pod spec) of every Deployment, StatefulSet and Job."""
    for o in objects:
        if o["kind"] in ("Deployment", "StatefulSet", "Job"):
            yield o, o["spec"]["template"]["spec"]


def inferq_containers(objects: tuple[Obj, ...]) -> Iterator[tuple[Obj, Obj, Obj]]:
    """(workload, pod spec, container) of every container that runs the inferq command."""
    for workload, pod in pod_templates(objects):
        for container in pod["containers"]:
            if container.get("args", [None])[0] == "inferq":
                yield workload, pod, container


def container_env(objects: tuple[Obj, ...], container: Obj) -> dict[str, str]:
    """The environment the container's process gets, as kubelet builds it: envFrom first,
    env over it. A Secret absent from the render (prod's) reads as its base placeholder."""
    env: dict[str, str] = {}
    for source in container.get("envFrom", []):
        if "configMapRef" in source:
            env.update(config_map(objects, source["configMapRef"]["name"]))
        else:
            env.update(secret(objects, source["secretRef"]["name"]))
    for var in container.get("env", []):
        if "value" in var:
            env[var["name"]] = var["value"]
    return env


def config_map(objects: tuple[Obj, ...], name: str) -> dict[str, str]:
    return dict(of_kind(objects, "ConfigMap")[name].get("data", {}))


def secret(objects: tuple[Obj, ...], name: str) -> dict[str, str]:
    found = of_kind(objects, "Secret").get(name) or placeholder_secrets()[name]
    values = {k: base64.b64decode(v).decode() for k, v in found.get("data", {}).items()}
    return {**values, **found.get("stringData", {})}


@functools.cache
def placeholder_secrets() -> dict[str, Obj]:
    """The placeholder Secrets of the base and the broker: an overlay replaces them or
    leaves them out (prod: the operator creates them)."""
    found = [*render("base"), *render("rabbitmq")]
    return {
        o["metadata"]["name"]: o
        for o in found
        if o["kind"] == "Secret" and o["metadata"].get("annotations", {}).get(PLACEHOLDER)
    }


def settings_from(cls: type[BaseSettings], env: dict[str, str]) -> Any:
    """``cls`` as the process builds it from this environment (and nothing else)."""
    with mock.patch.dict(os.environ, env, clear=True):
        return cls(_env_file=None)  # type: ignore[call-arg]


def worker_target(container: Obj) -> str:
    args = container["args"]
    assert args[:2] == ["inferq", "worker"], args
    return str(args[2])


def workers(objects: tuple[Obj, ...]) -> dict[str, tuple[Obj, Obj, Obj]]:
    """TARGET -> (Deployment, pod spec, container) of each worker."""
    return {
        worker_target(c): (w, p, c)
        for w, p, c in inferq_containers(objects)
        if c["args"][1] == "worker"
    }


def gateway(objects: tuple[Obj, ...]) -> tuple[Obj, Obj, Obj]:
    (found,) = [(w, p, c) for w, p, c in inferq_containers(objects) if c["args"][1] == "gateway"]
    return found


def pre_stop_sleep_s(container: Obj) -> float:
    """Seconds the container's preStop holds the SIGTERM back (``sleep N``), 0 without one."""
    hook = container.get("lifecycle", {}).get("preStop")
    if hook is None:
        return 0.0
    if "sleep" in hook:
        return float(hook["sleep"]["seconds"])
    command = hook["exec"]["command"]
    assert command[0] == "sleep", f"a preStop this test cannot time: {command}"
    return float(command[1])


def arg_value(args: list[str], flag: str) -> str | None:
    return args[args.index(flag) + 1] if flag in args else None


# --- schemas ------------------------------------------------------------------------------


def test_every_overlay_renders_objects_of_known_schemas(objects: tuple[Obj, ...]) -> None:
    """Each object is a Kubernetes kind of this release or a KEDA resource: none that
    neither validator knows slips through unchecked."""
    for o in objects:
        if o["apiVersion"].startswith("keda.sh/"):
            assert o["kind"] in KEDA_MODELS, o["kind"]
        else:
            kubernetes_validate.validate(o, KUBERNETES_VERSION, strict=True)


def test_keda_objects_match_the_crd_models(objects: tuple[Obj, ...]) -> None:
    """Validated by the models generated from KEDA 2.16's CRDs. They ignore unknown fields,
    so the object must come back whole from the model: a misspelt field (or a number where
    the CRD has a string) is lost on the way and fails the comparison."""
    keda = [o for o in objects if o["apiVersion"].startswith("keda.sh/")]
    assert {o["kind"] for o in keda} == set(KEDA_MODELS)
    for o in keda:
        model = KEDA_MODELS[o["kind"]].model_validate(o)
        again = model.model_dump(by_alias=True, exclude_none=True, mode="json")
        assert again == o, f"{o['kind']} {o['metadata']['name']}: fields the CRD lacks"


def test_the_validators_refuse_a_broken_object(objects: tuple[Obj, ...]) -> None:
    """Both checks above can fail: a misspelt field is refused."""
    deployment = dict(next(iter(of_kind(objects, "Deployment").values())))
    deployment["spec"] = {**deployment["spec"], "replica": 2}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, KUBERNETES_VERSION, strict=True)
    scaled = dict(next(iter(of_kind(objects, "ScaledObject").values())))
    scaled["spec"] = {**scaled["spec"], "minReplicas": 1}
    dumped = ScaledObject.model_validate(scaled).model_dump(
        by_alias=True, exclude_none=True, mode="json"
    )
    assert dumped != scaled


# --- workers and their scalers ------------------------------------------------------------


def test_every_builtin_model_has_a_worker(objects: tuple[Obj, ...]) -> None:
    assert set(workers(objects)) == set(BUILTIN_MODELS)


def test_a_worker_is_healthy_by_its_own_check(objects: tuple[Obj, ...]) -> None:
    """The exec probes run `inferq worker TARGET --check` for the container's own TARGET,
    and the liveness file's directory (INFERQ_HEALTH_DIR) is a writable volume: the root
    filesystem is read-only, and a file the worker cannot touch fails the probe."""
    for target, (_, pod, container) in workers(objects).items():
        for probe in ("startupProbe", "livenessProbe"):
            command = container[probe]["exec"]["command"]
            assert command == ["inferq", "worker", target, "--check"], (target, probe)
        assert container["securityContext"]["readOnlyRootFilesystem"] is True
        settings = settings_from(WorkerSettings, container_env(objects, container))
        assert settings.health_dir.rstrip("/") in writable_mounts(pod, container), target


def test_workers_can_write_what_they_write(objects: tuple[Obj, ...]) -> None:
    """On a read-only root filesystem, the liveness files' directory and the cache of
    model files fetched from the store (`inferq worker onnx:NAME`, the model host's) are
    writable volumes, in the workers' and the model host's pods."""
    for workload, pod, container in inferq_containers(objects):
        if container["args"][1] not in ("worker", "host"):
            continue
        env = container_env(objects, container)
        mounts = writable_mounts(pod, container)
        assert settings_from(WorkerSettings, env).health_dir.rstrip("/") in mounts
        cache = settings_from(CatalogSettings, env).model_cache_dir
        assert cache.rstrip("/") in mounts, (workload["metadata"]["name"], cache)


def writable_mounts(pod: Obj, container: Obj) -> set[str]:
    """The container's mount paths of writable emptyDir volumes."""
    empty_dirs = {v["name"] for v in pod.get("volumes", []) if "emptyDir" in v}
    return {
        m["mountPath"].rstrip("/")
        for m in container.get("volumeMounts", [])
        if m["name"] in empty_dirs and not m.get("readOnly")
    }


def test_every_worker_has_a_scaler_on_its_queue(objects: tuple[Obj, ...]) -> None:
    """A ScaledObject per worker Deployment, counting the model's queue (named as the
    worker declares it, in the namespace of its settings) over the management API, so the
    messages busy workers hold count; the target per replica is the worker's prefetch."""
    scaled = {
        o["spec"]["scaleTargetRef"]["name"]: o for o in of_kind(objects, "ScaledObject").values()
    }
    for target, (deployment, _, container) in workers(objects).items():
        scaler = scaled[deployment["metadata"]["name"]]
        assert scaler["spec"]["scaleTargetRef"].get("kind", "Deployment") == "Deployment"
        settings = settings_from(WorkerSettings, container_env(objects, container))
        model_class = load_model_class(target)
        (trigger,) = scaler["spec"]["triggers"]
        metadata = trigger["metadata"]
        assert trigger["type"] == "rabbitmq"
        assert set(metadata) <= RABBITMQ_TRIGGER_PARAMETERS, set(metadata)
        assert metadata["queueName"] == Names(settings.namespace).model_queue(model_class.name)
        assert metadata["protocol"] == "http"  # AMQP counts ready messages only
        assert metadata.get("excludeUnacknowledged", "false") == "false"
        assert metadata["mode"] == "QueueLength"
        assert metadata["vhostName"] == "/"
        assert float(metadata["activationValue"]) >= 0
        prefetch = Worker(model_class(settings), settings).prefetch
        assert float(metadata["value"]) == prefetch, target


def test_only_a_model_that_allows_a_cold_start_scales_to_zero(objects: tuple[Obj, ...]) -> None:
    """The gateway queues the tasks of a model with no live worker only if its class says
    `scale_to_zero` (api_service/core/live_models.py); any other gets 503 and publishes
    nothing, so scaled to zero it would never see the message that wakes it."""
    scaled = {
        o["spec"]["scaleTargetRef"]["name"]: o for o in of_kind(objects, "ScaledObject").values()
    }
    for target, (deployment, _, _) in workers(objects).items():
        spec = scaled[deployment["metadata"]["name"]]["spec"]
        lowest = spec.get("minReplicaCount", 0)
        assert lowest == (0 if load_model_class(target).scale_to_zero else 1), target
        assert spec["maxReplicaCount"] >= max(1, lowest)
        assert "replicas" not in deployment["spec"], "the ScaledObject owns the replica count"


def test_keda_reads_the_management_api_of_this_namespace(
    overlay: str, objects: tuple[Obj, ...]
) -> None:
    """The TriggerAuthentication's Secret holds an http URL of the management API that
    KEDA's operator, in its own namespace, resolves: the Service's full DNS name."""
    auths = of_kind(objects, "TriggerAuthentication")
    for scaler in of_kind(objects, "ScaledObject").values():
        (trigger,) = scaler["spec"]["triggers"]
        auth = auths[trigger["authenticationRef"]["name"]]
        (ref,) = [r for r in auth["spec"]["secretTargetRef"] if r["parameter"] == "host"]
        url = urlsplit(secret(objects, ref["name"])[ref["key"]])
        assert url.scheme == "http" and url.path == "/"
        if of_kind(objects, "Secret").get(ref["name"]):  # an overlay's own, not a placeholder
            namespace = auth["metadata"]["namespace"]
            assert url.hostname == f"rabbitmq.{namespace}.svc", url.hostname
            services = of_kind(objects, "Service")
            ports = {p["port"] for p in services["rabbitmq"]["spec"]["ports"]}
            assert url.port in ports


# --- the gateway ----------------------------------------------------------------------------


def test_gateway_probes_are_public_routes_of_the_app(objects: tuple[Obj, ...]) -> None:
    """Each probe's path is a GET route of the gateway's app, and needs no API key (the
    kubelet sends none, and INFERQ_AUTH is on)."""
    _, _, container = gateway(objects)
    app = create_fastapi_app(settings_from(GatewaySettings, container_env(objects, container)))

    def served(path: str) -> bool:
        scope = {"type": "http", "path": path, "method": "GET", "root_path": "", "headers": []}
        return any(route.matches(scope)[0] == Match.FULL for route in app.routes)

    assert not served("/no-such-route")
    paths = {}
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        path = container[probe]["httpGet"]["path"]
        assert served(path), path
        assert required_scope("GET", path) is None, f"{path} needs a key"
        paths[probe] = path
    # Liveness without dependencies; readiness on the broker and Redis.
    assert paths["livenessProbe"] == "/healthz" and paths["readinessProbe"] == "/readyz"


def test_gateway_ports_are_the_ones_it_listens_on(objects: tuple[Obj, ...]) -> None:
    """HTTP on --port (else INFERQ_PORT), gRPC on INFERQ_GRPC_PORT, on every address; the
    probes and the Service name the container's ports."""
    deployment, pod, container = gateway(objects)
    settings = settings_from(GatewaySettings, container_env(objects, container))
    args = container["args"]
    port = int(arg_value(args, "--port") or settings.port)
    host = arg_value(args, "--host") or settings.host
    assert host == "0.0.0.0"
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {"http": port, "grpc": settings.grpc_port}
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        assert container[probe]["httpGet"]["port"] in (ports["http"], "http")
    # On a pod address with INFERQ_AUTH=auto and no key yet the gateway refuses to start.
    assert settings.auth == "on"
    labels = pod_labels(deployment)
    (service,) = [
        s
        for s in of_kind(objects, "Service").values()
        if s["spec"].get("selector") and s["spec"]["selector"].items() <= labels.items()
    ]
    targets = {p["name"]: p["targetPort"] for p in service["spec"]["ports"]}
    assert {n: ports[t] for n, t in targets.items()} == ports


def pod_labels(workload: Obj) -> dict[str, str]:
    return dict(workload["spec"]["template"]["metadata"]["labels"])


# --- shutdown -------------------------------------------------------------------------------


def test_grace_periods_are_ordered(objects: tuple[Obj, ...]) -> None:
    """Kubernetes' SIGKILL comes terminationGracePeriodSeconds after the pod began to stop
    (the preStop included): later than the process's own grace ends."""
    _, pod, container = gateway(objects)
    settings = settings_from(GatewaySettings, container_env(objects, container))
    assert settings.shutdown_grace_s > settings.max_wait_s  # a ?wait= may finish
    # uvicorn drains the HTTP requests, then the lifespan stops gRPC with its own grace.
    needed = pre_stop_sleep_s(container) + settings.shutdown_grace_s + settings.grpc_grace_s
    assert pod["terminationGracePeriodSeconds"] > needed
    for target, (_, pod, container) in workers(objects).items():
        settings = settings_from(WorkerSettings, container_env(objects, container))
        needed = pre_stop_sleep_s(container) + settings.grace_period_s
        assert pod["terminationGracePeriodSeconds"] > needed, target
    # The model host stops its workers with the same grace, then kills what is left.
    (host,) = [(p, c) for _, p, c in inferq_containers(objects) if c["args"][1] == "host"]
    settings = settings_from(WorkerSettings, container_env(objects, host[1]))
    assert host[0]["terminationGracePeriodSeconds"] > settings.grace_period_s


def test_the_gateway_keeps_serving_while_its_endpoints_go(objects: tuple[Obj, ...]) -> None:
    """The gateway closes its sockets at SIGTERM: a preStop pause lets the endpoint
    removal reach the proxies first. Workers take no connections and need none."""
    _, _, container = gateway(objects)
    assert pre_stop_sleep_s(container) >= 3
    for _, _, container in workers(objects).values():
        assert pre_stop_sleep_s(container) == 0


# --- settings, references, security -------------------------------------------------------


def setting_names() -> set[str]:
    names = set()
    for cls in SETTINGS_CLASSES:
        prefix = cls.model_config.get("env_prefix", "")
        names |= {f"{prefix}{field}".upper() for field in cls.model_fields}
    return names


def test_settings_names_are_real(objects: tuple[Obj, ...]) -> None:
    """Every INFERQ_* name an inferq container gets is a field of a settings class, the
    others are standard ones (AWS_*, OTEL_*); and the values parse as each role reads them."""
    known = setting_names()
    for workload, _, container in inferq_containers(objects):
        env = container_env(objects, container)
        for name in env:
            if name.startswith("INFERQ_"):
                assert name in known, f"{workload['metadata']['name']}: no setting {name}"
            else:
                assert name.startswith(("AWS_", "OTEL_")), name
        for cls in SETTINGS_CLASSES:
            settings_from(cls, env)  # raises on a value the role would refuse


def test_settings_the_code_reads_are_set(overlay: str, objects: tuple[Obj, ...]) -> None:
    """A cluster needs the shared catalog and object store, not the defaults' local files
    (each pod would have its own), and prod's broker cluster needs quorum queues."""
    _, _, container = gateway(objects)
    env = container_env(objects, container)
    catalog = settings_from(CatalogSettings, env)
    assert catalog.catalog_url.startswith("postgresql+psycopg://")
    assert catalog.model_store_url.startswith("s3://")
    common = settings_from(CommonSettings, env)
    replicas = of_kind(objects, "StatefulSet")["rabbitmq"]["spec"].get("replicas", 1)
    assert common.queue_type == ("quorum" if replicas > 1 else "classic")
    for name in ("INFERQ_AMQP_URL", "INFERQ_REDIS_URL", "INFERQ_CATALOG_URL"):
        assert name not in config_map(objects, "inferq-settings"), f"{name}: in the Secret"


def test_references_resolve(overlay: str, objects: tuple[Obj, ...]) -> None:
    """Every ConfigMap and Secret (and key) a pod or KEDA names is in the render, or (prod)
    is a placeholder of the base the operator creates; the overlay ships no placeholder."""
    rendered_secrets = of_kind(objects, "Secret")
    for o in rendered_secrets.values():
        assert o["metadata"].get("annotations", {}).get(PLACEHOLDER) != "true", o

    def check(kind: str, name: str, key: str | None = None) -> None:
        if kind == "ConfigMap":
            data = config_map(objects, name)
        else:
            assert name in rendered_secrets or name in placeholder_secrets(), name
            data = secret(objects, name)
        assert key is None or key in data, (name, key)

    for _, pod in pod_templates(objects):
        for container in [*pod.get("initContainers", []), *pod["containers"]]:
            for source in container.get("envFrom", []):
                for kind, ref in (("ConfigMap", "configMapRef"), ("Secret", "secretRef")):
                    if ref in source:
                        check(kind, source[ref]["name"])
            for var in container.get("env", []):
                ref = var.get("valueFrom", {}).get("secretKeyRef")
                if ref:
                    check("Secret", ref["name"], ref["key"])
        for volume in pod.get("volumes", []):
            sources = volume.get("projected", {}).get("sources", [volume])
            for source in sources:
                if "secret" in source:
                    check("Secret", source["secret"].get("secretName") or source["secret"]["name"])
                if "configMap" in source:
                    check("ConfigMap", source["configMap"]["name"])
    for auth in of_kind(objects, "TriggerAuthentication").values():
        for ref in auth["spec"]["secretTargetRef"]:
            check("Secret", ref["name"], ref["key"])


def test_budgets_and_scalers_select_workloads(objects: tuple[Obj, ...]) -> None:
    """Every PodDisruptionBudget selects one workload's pods and lets one go; every
    Deployment and StatefulSet has one."""
    workloads = [o for o in objects if o["kind"] in ("Deployment", "StatefulSet")]
    budgeted = set()
    for pdb in of_kind(objects, "PodDisruptionBudget").values():
        selector = pdb["spec"]["selector"]["matchLabels"]
        (selected,) = [w for w in workloads if selector.items() <= pod_labels(w).items()]
        budgeted.add(selected["metadata"]["name"])
        assert pdb["spec"].get("maxUnavailable") == 1
    services = {"redis", "postgres", "minio"}  # dev's single-node stores: nothing to keep up
    assert {w["metadata"]["name"] for w in workloads} - budgeted <= services
    names = {d["metadata"]["name"] for d in of_kind(objects, "Deployment").values()}
    for scaler in of_kind(objects, "ScaledObject").values():
        assert scaler["spec"]["scaleTargetRef"]["name"] in names


def test_pods_run_unprivileged(objects: tuple[Obj, ...]) -> None:
    """Every pod: non-root, RuntimeDefault seccomp, no capabilities, no privilege
    escalation, resource requests and a memory limit. inferq's: as the image's user, on a
    read-only root filesystem, without a service account token."""
    for workload, pod in pod_templates(objects):
        name = workload["metadata"]["name"]
        assert pod["securityContext"]["runAsNonRoot"] is True, name
        assert pod["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault", name
        assert pod.get("automountServiceAccountToken") is False, name
        for container in [*pod.get("initContainers", []), *pod["containers"]]:
            context = container["securityContext"]
            assert context["allowPrivilegeEscalation"] is False, name
            assert context["capabilities"]["drop"] == ["ALL"], name
            if container in pod["containers"]:
                assert {"cpu", "memory"} <= set(container["resources"]["requests"]), name
                assert "memory" in container["resources"]["limits"], name
    for _, pod, container in inferq_containers(objects):
        assert pod["securityContext"]["runAsUser"] == IMAGE_UID
        assert container["securityContext"]["readOnlyRootFilesystem"] is True


def test_one_image_for_every_inferq_role(objects: tuple[Obj, ...]) -> None:
    images = {c["image"] for _, _, c in inferq_containers(objects)}
    assert len(images) == 1, images
