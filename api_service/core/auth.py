"""API keys at the gateway: who calls, and whether the call is theirs to make. Every door runs
the one `KeyAuthenticator` (the HTTP front door per request, the WebSocket at its handshake,
the gRPC door per call), so a route cannot be left out by forgetting it.

A key travels as ``Authorization: Bearer iq_<key id>_<secret>`` or ``X-API-Key: ...`` (gRPC:
the same metadata keys). Its record comes from the catalog (`catalog.keys`), cached for
``INFERQ_KEY_CACHE_S``: a revoked key stops working on every gateway within that time. The
secret's SHA-256 is compared with the stored one in constant time.

What each call needs (`required_scope`, `grpc_required_scope`): nothing for the health
probes, the API's description (``/docs``, ``/openapi.json``, gRPC reflection) and the
dashboard's page (it asks for a key itself); ``predict`` for the calls that make tasks;
``admin`` for model changes and keys; ``read`` for everything else (tasks, models, the
catalog, ``/metrics``, ``/stats``).

``INFERQ_AUTH``: ``on`` requires a key for every call but those; ``off`` lets anyone call;
``auto`` (the default) requires one once the catalog holds an active key, and until then
serves loopback clients only (`refuse_open_bind` keeps the gateway off other addresses)."""

from __future__ import annotations

import asyncio
import functools
import hmac
import ipaddress
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, TypeVar

from api_service.core.gateway import Caller, KeyLimits
from api_service.core.references import catalog_call
from api_service.metrics import record_key_request
from catalog.db import Catalog
from catalog.keys import parse_token, secret_hash
from catalog.records import ApiKey
from inferq.errors import CatalogUnavailable, Forbidden, Unauthenticated
from inferq.settings import GatewaySettings

logger = logging.getLogger(__name__)

PREDICT, READ, ADMIN = "predict", "read", "admin"
#: Paths anyone may call (GET): probes, the API's description, the dashboard's page.
PUBLIC_PATHS = frozenset(
    {"/healthz", "/readyz", "/v2/health/live", "/v2/health/ready", "/docs", "/openapi.json"}
)
PUBLIC_PAGES = ("/dashboard",)  # and what is under it
#: gRPC services anyone may call: the standard health and reflection services.
PUBLIC_GRPC_SERVICES = (
    "/grpc.health.v1.Health/",
    "/grpc.reflection.v1alpha.ServerReflection/",
    "/grpc.reflection.v1.ServerReflection/",
)
#: The Open Inference Protocol's server health calls (REST's are public paths).
PUBLIC_GRPC_METHODS = frozenset(
    {"/inference.GRPCInferenceService/ServerLive", "/inference.GRPCInferenceService/ServerReady"}
)
PREDICT_GRPC_METHODS = frozenset(
    {"/inference.GRPCInferenceService/ModelInfer", "/inferq.v1.InferqService/Submit"}
)
CHANGING = frozenset({"POST", "PUT", "PATCH", "DELETE"})
#: Most key ids remembered at once (unknown ones too: a flood of made-up keys must not reach
#: the catalog once per request, nor grow the cache without bound).
MAX_CACHED_KEYS = 10_000
_ANY_KEY = "any key"  # what `keys_exist` asks (a key id is hex: no other query has this name)
T = TypeVar("T")


def required_scope(method: str, path: str) -> str | None:
    """The scope an HTTP (or WebSocket: ``GET``) call needs; None: anyone may make it."""
    if path in PUBLIC_PATHS or path.startswith(PUBLIC_PAGES):
        return None
    if path == "/ws":
        return PREDICT
    if method == "POST" and (
        path.startswith("/predict/") or (path.startswith("/v2/models/") and path.endswith("/infer"))
    ):
        return PREDICT
    if path == "/keys" or path.startswith("/keys/"):
        return ADMIN
    if method in CHANGING and path.startswith("/models/"):
        return ADMIN  # uploads, aliases, deployments, deletions
    return READ


def grpc_required_scope(method: str) -> str | None:
    """The scope a gRPC method (``/package.Service/Method``) needs; None: anyone."""
    if method in PUBLIC_GRPC_METHODS or method.startswith(PUBLIC_GRPC_SERVICES):
        return None
    return PREDICT if method in PREDICT_GRPC_METHODS else READ


def token_of(headers: Mapping[str, str]) -> str | None:
    """The key a request carries (None: none; "" for an Authorization header of another
    scheme). Header names are lower case here (ASGI's and gRPC's); the scheme is matched
    without regard to case, and whitespace around the parts is ignored."""
    authorization = headers.get("authorization")
    if authorization is not None:
        scheme, _, token = authorization.strip().partition(" ")
        return token.strip() if scheme.lower() == "bearer" else ""
    key = headers.get("x-api-key")
    return None if key is None else key.strip()


def is_loopback(client: Any) -> bool:
    """Whether an ASGI ``client`` (host, port) is this machine."""
    return _loopback_address(client[0] if client else "")


@functools.lru_cache(maxsize=1024)  # parsing an address was ~3 us of every keyless call
def _loopback_address(host: str) -> bool:
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    mapped = getattr(address, "ipv4_mapped", None)  # ::ffff:127.0.0.1
    return bool((mapped or address).is_loopback)


def caller_of(key: ApiKey) -> Caller:
    """The caller a key's record makes."""
    per_s = 60.0 if key.per == "minute" else 1.0
    return Caller(
        name=key.name,
        scopes=frozenset(key.scopes),
        key_id=key.key_id,
        models=frozenset(key.models) if key.models else None,
        limits=KeyLimits(key.rate, per_s, key.max_in_flight),
    )


class _Cached:
    __slots__ = ("caller", "digest", "expires", "revoked")

    def __init__(self, key: ApiKey | None, digest: str, expires: float) -> None:
        self.caller = caller_of(key) if key is not None else None
        self.revoked = key is not None and key.revoked is not None
        self.digest = digest
        self.expires = expires


class KeyAuthenticator:
    """The gateway's authentication hook (`api_service.front_door.Authenticate`): the
    `Caller` of a call's key, None for an anonymous call that may be made; raises
    `Unauthenticated` (401) or `Forbidden` (403)."""

    def __init__(self, settings: GatewaySettings, catalog: Callable[[], Catalog]) -> None:
        """``catalog``: the gateway's catalog once it is open (the hook is built before)."""
        self.mode = settings.auth
        self.ttl_s = settings.key_cache_s
        self._catalog = catalog
        self._keys: dict[str, _Cached] = {}
        # The catalog queries under way, by what they ask (a key id, or `_ANY_KEY`).
        self._queries: dict[str, asyncio.Future[Any]] = {}
        self._active: tuple[float, bool] = (0.0, False)  # (until, whether a key exists)

    async def __call__(self, scope: Mapping[str, Any], headers: Mapping[str, str]) -> Caller | None:
        if self.mode == "off":
            return None
        path = scope.get("path", "")
        if scope.get("type") == "grpc":
            needed = grpc_required_scope(path)
        else:
            needed = required_scope(scope.get("method", "GET"), path)
        if needed is None:
            return None
        token = token_of(headers)
        if token is None:
            if self.mode == "auto" and not await self.keys_exist():
                if is_loopback(scope.get("client")):
                    return None
                raise Unauthenticated(
                    "no API key exists yet, so only this machine may call; create one "
                    "(`inferq keys create NAME --scopes predict,read`) and send it as "
                    "'Authorization: Bearer <key>'"
                )
            record_key_request("", "unauthenticated")
            raise Unauthenticated(
                "this call needs an API key: 'Authorization: Bearer <key>' or 'X-API-Key: <key>'"
            )
        caller = await self.caller(token)
        if needed not in caller.scopes:
            record_key_request(caller.name, "forbidden")
            raise Forbidden(
                f"the key {caller.name!r} ({caller.key_id}) has no {needed!r} scope "
                f"(it has: {', '.join(sorted(caller.scopes)) or 'none'})"
            )
        return caller

    async def caller(self, token: str) -> Caller:
        """The caller of a key; `Unauthenticated` for a malformed, unknown, revoked or wrong
        one (the message says which, never anything of the secret)."""
        parsed = parse_token(token)
        if parsed is None:
            record_key_request("", "unauthenticated")
            raise Unauthenticated("the API key is malformed: it reads iq_<key id>_<secret>")
        key_id, secret = parsed
        cached = await self._lookup(key_id)
        # Computed and compared whatever the record says: the answer's timing tells nothing.
        right = hmac.compare_digest(secret_hash(secret), cached.digest)
        if cached.caller is None or not right:
            record_key_request("", "unauthenticated")
            raise Unauthenticated(f"the API key {key_id} is not valid")
        if cached.revoked:
            record_key_request(cached.caller.name, "unauthenticated")
            raise Unauthenticated(f"the API key {key_id} ({cached.caller.name}) was revoked")
        return cached.caller

    async def keys_exist(self) -> bool:
        """Whether the catalog holds an active key (cached like the keys)."""
        until, exists = self._active
        if time.monotonic() < until:
            return exists
        try:
            return await self._once(_ANY_KEY, self._load_active)
        except CatalogUnavailable:
            if until:  # what was known last: the database is away, not the keys
                return exists
            raise

    async def _load_active(self) -> bool:
        exists = await catalog_call(self._catalog().has_active_keys)
        self._active = (time.monotonic() + self.ttl_s, exists)
        return exists

    async def _once(self, what: str, query: Callable[[], Awaitable[T]]) -> T:
        """``query``'s answer, one at a time per ``what`` (single flight): the calls that ask
        while it runs wait for the same answer rather than each asking the database."""
        running: asyncio.Future[T] | None = self._queries.get(what)
        if running is None:
            running = self._queries[what] = asyncio.ensure_future(query())
            running.add_done_callback(lambda _: self._queries.pop(what, None))
        return await asyncio.shield(running)

    async def _lookup(self, key_id: str) -> _Cached:
        cached = self._keys.get(key_id)
        if cached is not None and time.monotonic() < cached.expires:
            return cached
        return await self._once(key_id, lambda: self._load(key_id, cached))

    async def _load(self, key_id: str, stale: _Cached | None) -> _Cached:
        try:
            found = await catalog_call(self._catalog().find_key, key_id)
        except CatalogUnavailable:
            if stale is not None:
                logger.warning("catalog unavailable: key %s checked by its last record", key_id)
                return stale
            raise
        key, digest = found if found is not None else (None, "")
        cached = _Cached(key, digest, time.monotonic() + self.ttl_s)
        if len(self._keys) >= MAX_CACHED_KEYS:
            self._keys.pop(next(iter(self._keys)))  # the oldest entry
        self._keys[key_id] = cached
        return cached


def may_use(caller: Caller | None, model: str) -> None:
    """`Forbidden` if the caller's key lists models and ``model`` (a reference: ``name``,
    ``name@3``, ``name@alias``) is not among them."""
    if caller is None or caller.models is None:
        return
    name = model.partition("@")[0]
    if name not in caller.models:
        record_key_request(caller.name, "forbidden")
        raise Forbidden(
            f"the key {caller.name!r} ({caller.key_id}) may not use the model {name!r} "
            f"(it may use: {', '.join(sorted(caller.models))})"
        )


def open_bind_refusal(settings: GatewaySettings, catalog_url: str) -> str | None:
    """Why the gateway must not listen on ``settings.host`` (None: it may). Secure by
    default: with ``INFERQ_AUTH=auto`` and no active key, anyone who reaches the port could
    call, so only a loopback address is served until a key exists or auth is turned off."""
    if settings.auth != "auto" or _is_loopback_host(settings.host):
        return None
    with Catalog.open(catalog_url) as catalog:
        if catalog.has_active_keys():
            return None
    return (
        f"refusing to listen on {settings.host}: no API key exists, so anyone reaching the "
        "port could call. Create one (`inferq keys create NAME --scopes predict,read`), listen "
        "on 127.0.0.1, or set INFERQ_AUTH=off to serve without keys (behind your own "
        "authentication)"
    )


def _is_loopback_host(host: str) -> bool:
    return host == "localhost" or is_loopback((host.strip("[]"), 0))
