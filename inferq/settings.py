"""Settings, read once from the environment (prefix ``INFERQ_``) and a ``.env`` file.

One class per role; the roles share `CommonSettings`. Objects are passed explicitly to the
code that needs them, never read from a global.
"""

from __future__ import annotations

from typing import Literal
from urllib.parse import urlsplit

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"
#: A served name (`inferq.names.version_key`): a model name, or a version of one (``name@3``).
SERVED_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}(@[1-9][0-9]{0,8})?$"
QueueType = Literal["classic", "quorum"]
ModelChanges = Literal["off", "loopback", "on"]
AuthMode = Literal["auto", "on", "off"]


class CommonSettings(BaseSettings):
    """What the gateway and the workers must agree on."""

    model_config = SettingsConfigDict(env_prefix="INFERQ_", env_file=".env", extra="ignore")

    amqp_url: str = Field(
        "amqp://guest:guest@127.0.0.1:5672/",
        description="RabbitMQ connection URL, or several, comma-separated, for the nodes of a "
        "cluster (each a full URL; a comma inside one is written %2C): a process connects to "
        "one of them (from a random one on, so gateways spread) and, when that connection is "
        "lost, to the next that answers.",
    )
    redis_url: str = Field(
        "redis://127.0.0.1:6379/0",
        description="Redis connection URL; or, for Redis with Sentinel, "
        "redis+sentinel://[:password@]host:port[,host:port...]/MASTER_NAME[/DB] (the sentinels; "
        "the password is the Redis one): the clients follow a failover.",
    )
    redis_sentinel_password: str | None = Field(
        None, description="Password of the sentinels themselves, if they require one."
    )
    redis_min_replicas_ack: int = Field(
        0,
        ge=0,
        description="Replicas that must have a task's final state (Redis WAIT) before a "
        "worker acks its message; until they do, it writes and waits again and the message "
        "stays unacked. 0: ack once the primary has it (a failover may lose that write).",
    )
    redis_replica_timeout_ms: int = Field(
        1000, gt=0, description="Longest wait of one WAIT for INFERQ_REDIS_MIN_REPLICAS_ACK."
    )
    namespace: str = Field(
        "inferq",
        pattern=NAME_PATTERN,
        description="Prefix of every queue, exchange and Redis key; isolates deployments.",
    )
    heartbeat_interval_s: float = Field(
        2.0, gt=0, description="How often a worker renews its heartbeat key."
    )
    heartbeat_misses: int = Field(
        3, ge=2, description="A worker is dead after this many missed heartbeats."
    )
    result_ttl_s: int = Field(
        86_400, gt=0, description="How long a task and its result are kept in Redis."
    )
    model_record_ttl_s: int = Field(
        7 * 86_400, gt=0, description="How long a model stays known after its last worker left."
    )
    queue_max_length: int = Field(
        10_000, gt=0, description="Default queue length limit per model; beyond it: 429."
    )
    delivery_limit: int = Field(
        5, ge=1, description="Starts of one task that crashed its worker before it is failed."
    )
    amqp_heartbeat_s: int = Field(
        10,
        ge=0,
        description="AMQP heartbeat timeout asked of the broker (a `heartbeat=` in the URL "
        "wins): a peer silent this long is dead, so a hung worker's deliveries go back to the "
        "queue within about twice this. 0 turns heartbeats off.",
    )
    queue_type: QueueType = Field(
        "classic",
        description="Model queues: durable classic (fastest: a task reaches a worker without "
        "waiting for the disk) or quorum (replicated, for a broker cluster). An existing "
        "queue keeps its type: delete it to change it.",
    )

    @field_validator("amqp_url")
    @classmethod
    def _amqp_urls_parse(cls, value: str) -> str:
        """One URL or a comma-separated list of them, each amqp:// or amqps:// with a host;
        kept without the spaces around the commas."""
        urls = [url.strip() for url in value.split(",")]
        for url in urls:
            if not url:
                raise ValueError(f"an empty URL in the list {value!r}")
            try:
                parts = urlsplit(url)
                parts.port  # noqa: B018 - raises on a port that is not a number
            except ValueError as error:
                raise ValueError(f"{url!r} is not a URL: {error}") from None
            if parts.scheme not in ("amqp", "amqps") or not parts.hostname:
                raise ValueError(f"{url!r} is not an amqp:// or amqps:// URL with a host")
        return ",".join(urls)

    @field_validator("redis_url")
    @classmethod
    def _redis_url_parses(cls, value: str) -> str:
        from inferq.redis_client import SENTINEL_SCHEME, parse_sentinel_url

        if value.startswith(SENTINEL_SCHEME):
            parse_sentinel_url(value)  # its ValueError says what is wrong
        return value

    @property
    def amqp_urls(self) -> list[str]:
        """Every URL of `amqp_url`, each with the AMQP heartbeat asked for, unless the URL
        names its own."""
        return [self._with_heartbeat(url) for url in self.amqp_url.split(",")]

    @property
    def amqp_connection_url(self) -> str:
        """The first of `amqp_urls`, for callers that need one."""
        return self.amqp_urls[0]

    def _with_heartbeat(self, url: str) -> str:
        if "heartbeat=" in url:
            return url
        separator = "&" if "?" in url else "?"
        return f"{url}{separator}heartbeat={self.amqp_heartbeat_s}"

    @property
    def heartbeat_ttl_s(self) -> float:
        """Expiry of a heartbeat key: a worker that missed this many renewals is dead."""
        return self.heartbeat_interval_s * self.heartbeat_misses


class GatewaySettings(CommonSettings):
    """The HTTP gateway."""

    host: str = Field("127.0.0.1", description="Address the gateway listens on.")
    port: int = Field(8000, description="Port the gateway listens on.")
    max_body_bytes: int = Field(
        1_048_576, gt=0, description="Largest request body accepted; beyond it: 413."
    )
    body_timeout_s: float = Field(
        10.0,
        gt=0,
        description="Longest wait for the next piece of a request body (nginx's "
        "client_body_timeout); then 408 and the connection is closed. Long enough for a few "
        "TCP retransmissions on a poor link (1 + 2 + 4 s), short enough that a stalled "
        "client frees its connection soon.",
    )
    max_wait_s: float = Field(30.0, gt=0, description="Longest `?wait=` a request may hold.")
    shutdown_grace_s: float = Field(
        35.0,
        ge=0,
        description="On SIGTERM, how long the HTTP requests in flight may take to finish "
        "before they are cut (a `?wait=` holds up to INFERQ_MAX_WAIT_S): more than that wait, "
        "and less than the stop grace of the process manager (Kubernetes' "
        "terminationGracePeriodSeconds, compose's stop_grace_period).",
    )
    oip_max_body_bytes: int = Field(
        67_108_864,
        gt=0,
        description="Largest body an Open Inference Protocol infer request may have (the "
        "`/v2/.../infer` routes; others keep INFERQ_MAX_BODY_BYTES): 64 MiB holds a tensor of "
        "1M float32 values as JSON (~20 bytes a value) or 16M in binary tensor data; beyond "
        "it: 413.",
    )
    model_changes: ModelChanges = Field(
        "off",
        description="Who may upload, delete, alias and deploy models: off (nobody), loopback "
        "(clients on 127.0.0.1 or ::1; what `inferq up` sets) or on (anyone: only behind your "
        "own authentication, until API keys exist).",
    )
    auth: AuthMode = Field(
        "auto",
        description="Who may call: auto (API keys are required once the catalog holds an "
        "active one; with none, only loopback clients are served, and the gateway refuses to "
        "listen on another address), on (keys always required) or off (anyone, anywhere: "
        "only behind your own authentication). Keys: `inferq keys create`.",
    )
    key_cache_s: float = Field(
        2.0,
        ge=0,
        description="How long the gateway trusts a key lookup (and whether any key exists): "
        "a revoked key stops working on every gateway within this.",
    )
    gateway_access_log: bool = Field(
        False,
        description="Log one INFO line per HTTP request (method, path, status, time, trace "
        "id); 5xx answers are logged either way. Off by default: the workers' access log "
        "already has a line per task, and the gateway is the busiest process.",
    )
    default_deadline_s: float = Field(
        300.0, gt=0, description="Deadline of a task whose request names none."
    )
    registry_cache_s: float = Field(
        1.0, ge=0, description="How long the gateway caches a registry lookup."
    )
    publish_timeout_s: float = Field(
        5.0, gt=0, description="Longest wait for the broker to confirm a publish; then 503."
    )
    max_tasks_per_message: int = Field(
        64,
        ge=1,
        description="Most tasks packed into one queue message (those that arrive while the "
        "previous publish to the queue awaits its confirm), and never more than the model's "
        "max_batch_size.",
    )
    max_publishes_in_flight: int = Field(
        16,
        ge=1,
        description="Most publishes to one queue awaiting their confirm at once (one more "
        "starts only for tasks the others will not take).",
    )
    ws_max_in_flight: int = Field(
        64,
        ge=1,
        description="Most predictions one WebSocket (`/ws`) may have unanswered at once; "
        "beyond it a frame gets a TooManyInFlight error frame (the socket stays open).",
    )

    grpc_port: int = Field(
        8001,
        ge=0,
        le=65535,
        description="Port of the gateway's gRPC server (the Open Inference Protocol's "
        "inference.GRPCInferenceService, inferq.v1.InferqService, grpc.health.v1, "
        "reflection), on the gateway's host; 0: no gRPC server.",
    )
    grpc_max_message_bytes: int = Field(
        67_108_864,
        gt=0,
        description="Largest gRPC message the gateway receives or sends (gRPC's own default "
        "is 4 MiB): 64 MiB holds a tensor of 1M float64 values, as raw or typed contents, "
        "as INFERQ_OIP_MAX_BODY_BYTES does for REST; beyond it: RESOURCE_EXHAUSTED.",
    )
    grpc_grace_s: float = Field(
        10.0,
        ge=0,
        description="On shutdown (SIGTERM), how long calls in flight on the gRPC server may "
        "take to finish (health answers NOT_SERVING meanwhile); then they are cancelled.",
    )


class WorkerSettings(CommonSettings):
    """A model worker process."""

    prefetch: int = Field(
        0, ge=0, description="Unacked deliveries a worker holds; 0 picks 2 x max_batch_size."
    )
    concurrency: int | None = Field(
        None, ge=1, description="Overrides the model's concurrency (batches run at once)."
    )
    max_batch_size: int | None = Field(
        None, ge=1, description="Overrides the model's max_batch_size (requests per batch)."
    )
    max_batch_delay_ms: float | None = Field(
        None, ge=0, description="Overrides the model's max_batch_delay_ms (wait to fill a batch)."
    )
    metrics_port: int | None = Field(
        None, description="Serve Prometheus metrics on this port (replica i: port + i)."
    )
    health_dir: str = Field(
        "/tmp", description="Where a worker touches its liveness file at each heartbeat."
    )
    grace_period_s: float = Field(
        20.0, ge=0, description="On SIGTERM, how long in-flight tasks may take to finish."
    )
    access_log: bool = Field(
        True,
        description="Log one INFO line per finished task (id, model, status, queue and run "
        "time, trace id, worker). Failures are logged either way.",
    )


class CatalogSettings(BaseSettings):
    """The durable catalog of models, versions and aliases, and where model files live; read
    by the gateway, the model host and `inferq models ...`."""

    model_config = SettingsConfigDict(env_prefix="INFERQ_", env_file=".env", extra="ignore")

    catalog_url: str = Field(
        "sqlite:///.inferq/catalog.db",
        description="SQLAlchemy URL of the catalog: an SQLite file by default; "
        "postgresql+psycopg://user@host/db when several gateways share it.",
    )
    model_store_url: str = Field(
        ".inferq/models",
        description="Where model files live: a directory (default), or s3://bucket/prefix for "
        "an S3-compatible store (endpoint from AWS_ENDPOINT_URL, credentials as boto3 finds them).",
    )
    max_model_bytes: int = Field(
        256 * 1024 * 1024, gt=0, description="Largest model file accepted for upload."
    )
    validation_timeout_s: float = Field(
        30.0, gt=0, description="Longest a trial load of an uploaded model may take."
    )
    validation_memory_bytes: int = Field(
        2 * 1024 * 1024 * 1024,
        gt=0,
        description="Address-space limit of the process that trial-loads an uploaded model.",
    )
    allowed_operator_domains: str = Field(
        "ai.onnx,ai.onnx.ml",
        description="Comma-separated ONNX operator domains an uploaded model may use "
        "('' is ai.onnx's other name).",
    )
    model_cache_dir: str = Field(
        ".inferq/cache",
        description="Where a worker keeps the model files it fetched from an S3 store.",
    )


class HostSettings(CatalogSettings):
    """The model host (`inferq host`): runs the workers of the catalog's deployed versions."""

    host_poll_s: float = Field(
        2.0, gt=0, description="How often the model host reads the catalog's deployments."
    )


LogFormat = Literal["auto", "json", "text"]


class LogSettings(BaseSettings):
    """Logging, for every entry point."""

    model_config = SettingsConfigDict(env_prefix="INFERQ_LOG_", env_file=".env", extra="ignore")

    level: str = Field("INFO", description="Log level: DEBUG, INFO, WARNING, ERROR.")
    format: LogFormat = Field(
        "auto", description="json (one object a line), text, or auto: text on a terminal."
    )
    file: str | None = Field(
        None, description="Also write the log to this file (JSON lines), rotated by size."
    )
    file_max_bytes: int = Field(
        10 * 1024 * 1024, gt=0, description="Size at which the log file is rotated."
    )
    file_backups: int = Field(5, ge=0, description="Rotated log files kept (file.1, file.2 ...).")


def health_file(settings: WorkerSettings, model: str, worker_id: str = "*") -> str:
    """The file a worker of ``model`` touches while it is healthy, and removes when it stops
    (`inferq worker --check`); each worker has its own, so replicas of one model on one
    machine do not share it. ``worker_id="*"``: the pattern of them all."""
    return f"{settings.health_dir}/inferq-{settings.namespace}-{model}-{worker_id}.alive"
