"""The admission benchmark's baseline: a bare FastAPI endpoint that only echoes a review.

``POST /admission/validate`` reads the body, parses it as JSON and answers an
AdmissionReview in the version asked that allows the request and echoes its ``uid``:
what any webhook must do at the least, with no decision behind it. ``benchmarks.admission``
serves it with ``app.serving.serve`` (the same uvicorn options and the same TLS as
``sealgate serve``), one worker:

    python -m benchmarks.support.echo_app --port PORT --tls-cert CERT --tls-key KEY
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import orjson
from fastapi import FastAPI, Request
from fastapi.responses import Response


def create_app() -> FastAPI:
    """The echo application (a factory, as ``app.main:create_app`` is)."""
    app = FastAPI(openapi_url=None, docs_url=None, redoc_url=None)

    @app.post("/admission/validate")
    async def validate(request: Request) -> Response:
        review: Any = orjson.loads(await request.body())
        answer = {
            "apiVersion": review.get("apiVersion", "admission.k8s.io/v1"),
            "kind": "AdmissionReview",
            "response": {"uid": review["request"]["uid"], "allowed": True},
        }
        return Response(orjson.dumps(answer), media_type="application/json")

    @app.get("/readyz")
    async def ready() -> dict[str, str]:
        return {"status": "ok"}

    return app


def main() -> None:
    from app.config import load_settings
    from app.serving import TlsFiles, serve

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--tls-cert", type=Path, required=True)
    parser.add_argument("--tls-key", type=Path, required=True)
    args = parser.parse_args()
    settings = load_settings()  # the same connection limits as `sealgate serve`
    serve(
        app="benchmarks.support.echo_app:create_app",
        host="127.0.0.1",
        port=args.port,
        tls=TlsFiles(cert=args.tls_cert, key=args.tls_key),
        limit_concurrency=settings.max_connections,
        timeout_keep_alive=settings.keepalive_timeout,
    )


if __name__ == "__main__":
    main()
