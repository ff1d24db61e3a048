"""The FastAPI application: routers, lifespan, request middleware and the error handlers.

``create_app()`` is the only way the service is built (uvicorn uses the factory form
``app.main:create_app``). Every ``app.errors.Error`` becomes a JSON body
``{"error": {"code", "message"}}`` with its status; request validation failures become
400s, and the framework's own refusals (unknown route, wrong method, unparseable body)
take the same shape; anything unexpected is logged with the request id and answered with a bare 500
that carries no stack trace.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi_offline import FastAPIOffline
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app import __version__
from app.api import (
    admission,
    audit,
    authorities,
    decisions,
    health,
    hooks,
    keys,
    policy,
    scans,
    signatures,
    verify,
)
from app.api import verdicts as verdicts_api
from app.config import Settings, get_settings
from app.db.migrate import check_schema
from app.db.session import session_scope
from app.enforce.context import ContextRefresher
from app.enforce.startup import warn_about_open_trust
from app.error_codes import http_status_of
from app.errors import Error
from app.hooks.worker import start_worker, stop_worker
from app.limits import MAX_BODY_BYTES
from app.observability import Metrics, configure_logging, request_id_var
from app.policy.versions import ActiveVersionPoller
from app.services import Services
from app.signing.keys import check_kek_for_stored_keys

log = logging.getLogger("sealgate.http")

_TOO_LARGE_STATUS = http_status_of("input.too_large")
DOCS_ASSETS_URL = "/docs/assets"


class RequestContextMiddleware:
    """Request id, body-size cap, access log and HTTP metrics for every request.

    Written as plain ASGI so that it sees the final status and can refuse an oversized
    body before the route reads it (413), whether or not Content-Length was sent: a
    chunked body is counted as it is received, and once it passes the limit the request is
    answered 413 whatever the route or the framework's body parsing made of the failure.
    """

    def __init__(self, app: ASGIApp, *, metrics: Metrics, max_body: int = MAX_BODY_BYTES) -> None:
        self.app = app
        self.metrics = metrics
        self.max_body = max_body

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        incoming = headers.get(b"x-request-id", b"").decode("latin-1")[:64]
        # Printable ASCII only: it is echoed in a response header and written to the log.
        usable = incoming.isascii() and incoming.isprintable() and incoming
        request_id = incoming if usable else new_request_id()
        token = request_id_var.set(request_id)
        started = time.perf_counter()
        status = 500

        declared = headers.get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_body:
            status = _TOO_LARGE_STATUS
            await _send_json(send, status, _too_large(self.max_body), request_id)
            self._observe(scope, status, started)
            request_id_var.reset(token)
            return

        received = 0
        overflowed = responded = False

        async def limited_receive() -> Message:
            nonlocal received, overflowed
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_body:
                    overflowed = True
                    raise _BodyTooLarge
            return message

        async def send_with_id(message: Message) -> None:
            nonlocal status, responded
            if overflowed and not responded:
                # Whatever the app answers to a body it could not read (FastAPI turns the
                # exception into 400 "not valid JSON") is replaced by the 413 below.
                return
            if message["type"] == "http.response.start":
                responded = True
                status = message["status"]
                message.setdefault("headers", [])
                message["headers"] = [*message["headers"], (b"x-request-id", request_id.encode())]
            await send(message)

        try:
            try:
                await self.app(scope, limited_receive, send_with_id)
            except _BodyTooLarge:
                if responded:
                    raise
            if overflowed and not responded:
                status = _TOO_LARGE_STATUS
                await _send_json(send, status, _too_large(self.max_body), request_id)
        finally:
            self._observe(scope, status, started)
            request_id_var.reset(token)

    def _observe(self, scope: Scope, status: int, started: float) -> None:
        elapsed = time.perf_counter() - started
        template = _route_template(scope)
        method = scope.get("method", "")
        self.metrics.http_requests.labels(method, template, str(status)).inc()
        self.metrics.http_latency.labels(method, template).observe(elapsed)
        log.info(
            "request",
            extra={
                "method": method,
                "path": scope.get("path"),
                "status": status,
                "duration_ms": round(elapsed * 1000, 3),
            },
        )


def new_request_id() -> str:
    """A fresh request id: 128 random bits as 32 hex digits, like a uuid4's.

    From the process's pseudo-random generator, not ``os.urandom``: an id names a request
    in logs and answers, it guards nothing, and ``urandom`` is a system call that lets go of
    the GIL, which the decision recorder's thread then holds for up to a switch interval
    (measured: a sixth of the event loop's samples under load). ``random`` reseeds itself
    in a forked child.
    """
    return f"{random.getrandbits(128):032x}"


def _route_template(scope: Scope) -> str:
    """The path template of the route that answered, for metric labels (``unmatched`` if none).

    FastAPI's own routes put themselves in the scope; plain Starlette routes
    (``/openapi.json``) and mounts (the docs' assets) do not, so they are looked up among
    the app's routes by the endpoint they matched.
    """
    route = scope.get("route")
    if route is None and "endpoint" in scope:
        app = scope.get("app")
        endpoint = scope["endpoint"]
        for candidate in getattr(getattr(app, "router", None), "routes", ()):
            if endpoint in (getattr(candidate, "endpoint", None), getattr(candidate, "app", None)):
                route = candidate
                break
    return getattr(route, "path", None) or "unmatched"


class _BodyTooLarge(Exception):
    pass


def _too_large(limit: int) -> dict[str, Any]:
    return {
        "error": {
            "code": "input.too_large",
            "message": f"request body is larger than the limit of {limit} bytes",
        }
    }


async def _send_json(send: Send, status: int, body: dict[str, Any], request_id: str) -> None:
    import json

    payload = json.dumps(body).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(payload)).encode()),
                (b"x-request-id", request_id.encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": payload})


# The code of each status the framework itself answers with (an unknown route, a wrong
# method...); any other status is ``http.error``.
_HTTP_ERROR_CODES = {
    http_status_of(code): code
    for code in (
        "input.invalid",
        "auth.unauthenticated",
        "auth.forbidden",
        "not_found",
        "input.method_not_allowed",
        "input.too_large",
        "input.unsupported_media_type",
    )
}


def _http_error_message(request: Request, exc: StarletteHTTPException) -> str:
    """A message a person can act on for an error the framework raised before any route ran."""
    path = request.url.path[:256]
    if exc.status_code == 404:
        return f"no such route: {request.method} {path}"
    if exc.status_code == 405:
        # Not the Allow header's list: Starlette fills it from the first route on the path
        # only, and FastAPI has one route per method.
        return f"method {request.method} is not allowed on {path}"
    cause = exc.__cause__
    if exc.status_code == 400 and cause is not None:
        # FastAPI wraps what json.loads raised beyond JSONDecodeError.
        if isinstance(cause, RecursionError):
            return "request body is not valid JSON: it is nested too deeply"
        if isinstance(cause, UnicodeDecodeError):
            return "request body is not valid JSON: it is not UTF-8 text"
        return "request body is not valid JSON"
    return str(exc.detail)


def _install_error_handlers(app: FastAPI, metrics: Metrics) -> None:
    @app.exception_handler(Error)
    async def _sealgate_error(request: Request, exc: Error) -> JSONResponse:
        metrics.errors.labels(exc.code).inc()
        status = http_status_of(exc.code)  # the catalogue's, the one place statuses live
        if status >= 500:
            log.warning("request failed", extra={"code": exc.code, "error": exc.message})
        headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
        return JSONResponse(exc.to_json(), status_code=status, headers=headers)

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        metrics.errors.labels("input.invalid").inc()
        problems = []
        for err in exc.errors():
            where = ".".join(str(p) for p in err.get("loc", ()) if p != "body") or "body"
            problems.append(f"{where}: {err.get('msg')}")
        body = {"error": {"code": "input.invalid", "message": "; ".join(problems)}}
        return JSONResponse(body, status_code=http_status_of("input.invalid"))

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        # Raised by the framework itself (unknown route, wrong method, unparseable body):
        # answered in the same shape as every other error.
        code = _HTTP_ERROR_CODES.get(exc.status_code, "http.error")
        metrics.errors.labels(code).inc()
        body = {"error": {"code": code, "message": _http_error_message(request, exc)}}
        return JSONResponse(body, status_code=exc.status_code, headers=exc.headers)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        metrics.errors.labels("internal").inc()
        log.error("unexpected error", exc_info=exc, extra={"exc": repr(exc)[:200]})
        body = {"error": {"code": "internal", "message": "internal error; see the service log"}}
        return JSONResponse(body, status_code=http_status_of("internal"))


def create_app(settings: Settings | None = None, *, services: Services | None = None) -> FastAPI:
    """Build the service. ``services`` may be injected by tests; otherwise built from settings."""
    settings = settings or (services.settings if services else get_settings())
    configure_logging(settings.log_level)
    metrics = Metrics()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        owned = services is None
        app.state.services = services or Services.from_settings(settings)
        # Refuse to serve an unmigrated database: say so now, not at the first request.
        check_schema(app.state.services.engine)
        # Refuse to serve with stored signing keys and no (or the wrong) key-encryption key.
        with session_scope(app.state.services.sessions) as session:
            check_kek_for_stored_keys(session, settings=app.state.services.settings)
        # Serve, but name keys and authorities stored before scopes and identity rules.
        warn_about_open_trust(app.state.services)
        # Follow the active policy version (every replica polls the version table), and
        # the authorities and scans other replicas change.
        app.state.policy_poller = ActiveVersionPoller(
            engine_source=lambda: app.state.services.policy,
            sessions=app.state.services.sessions,
            data_override=app.state.services.settings.policy_data,
            # A new version empties the decision cache.
            on_load=lambda _version: app.state.services.caches.forget_policy(),
            interval=app.state.services.settings.refresh_interval,
        )
        app.state.policy_poller.start()
        refresher = ContextRefresher(
            app.state.services.decisions.context,
            interval=app.state.services.settings.refresh_interval,
        )
        refresher.start()
        caches = app.state.services.caches
        metrics.watch_caches(caches.all)
        # Process the push gate's inbox here too, unless SEALGATE_WORKER_ENABLED=false.
        worker = start_worker(app.state.services) if settings.worker_enabled else None
        if worker is not None:
            metrics.watch_retention(lambda: worker[0].retention)
        try:
            yield
        finally:
            if worker is not None:
                await stop_worker(*worker)
            refresher.stop()
            app.state.policy_poller.stop()
            if owned:
                await app.state.services.aclose()

    # /docs (Swagger UI) from the assets fastapi-offline ships: the hosts Sealgate runs on
    # often reach no CDN. No validator badge (it would call swagger.io), and no ReDoc (its
    # page fetches a logo from Redocly's CDN).
    app = FastAPIOffline(
        redoc_url=None,
        title="Sealgate",
        version=__version__,
        description="Sign container images and enforce Rego policies at push and at deploy.",
        lifespan=lifespan,
        static_url=DOCS_ASSETS_URL,
        swagger_ui_parameters={"validatorUrl": None},
    )
    app.state.metrics = metrics
    if services is not None:
        app.state.services = services
    _install_error_handlers(app, metrics)
    app.add_middleware(RequestContextMiddleware, metrics=metrics)
    # Routes are matched in order: the two that every Pod and every push reach first
    # (the router walk was a tenth of a warm admission review's event-loop time).
    for api in (
        admission,
        hooks,
        health,
        keys,
        signatures,
        authorities,
        verify,
        scans,
        policy,
        decisions,
        audit,
    ):
        app.include_router(api.router)
    app.include_router(verdicts_api.router)
    return app
