"""Registry requests of one uncached admission decision, in whichever Sealgate tree is on
``sys.path``: today's ``app.enforce.pipeline.decide`` or, in a tree from before the
pipeline (commit f2dacfa), ``app.enforce.decide.evaluate_image``.

Run by ``benchmarks/decision_pipeline.py --old-tree DIR`` with ``PYTHONPATH=DIR`` and the
tree as the working directory; written against the APIs both trees share (keys,
authorities, ``sign_image``, a scan upload, the tests' registry and image fixtures). One
signed image with an uploaded scan, behind a counting proxy on 127.0.0.1 that forwards to
a loopback ``docker-registry``. With ``--registry-scan`` the uploaded scan is removed from
the store afterwards, so the only scan is the report attached to the image in the
registry (as when CI attaches reports itself). Prints one JSON line: the count and the
requests made.
"""

from __future__ import annotations

import asyncio
import base64
import inspect
import json
import sys
import tempfile
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import delete

from app.auth.scopes import Scope
from app.auth.tokens import Principal
from app.config import load_settings
from app.db.migrate import upgrade
from app.db.models import ScanRecord
from app.db.session import session_scope
from app.enforce.sign import sign_image
from app.policy.input import Entrypoint
from app.services import Services
from app.signing.keys import generate_key, get_key
from app.signing.signers import Algorithm
from app.verify.trust import key_authority, save_authority
from tests.fixtures.images import push_random_image
from tests.fixtures.registry import start_registry, stop_registry

try:
    from app.enforce.scans import upload_scan
except ImportError:  # a tree from before app.enforce.scans, whose ingest_scan took Services
    from app.scans.ingest import ingest_scan as upload_scan  # type: ignore[no-redef]

KEK = base64.b64encode(b"sealgate-benchmark-kek-32-bytes!").decode()
PRINCIPAL = Principal(name="bench", scopes=(Scope.parse("admin"),))
REPORT = Path("tests/assets/trivy/dd_trivy_schema2_image_os_and_jar.json")


class CountingProxy:
    """Forwards every request to ``upstream`` and records it (a stand-in on 127.0.0.1)."""

    def __init__(self, upstream: str) -> None:
        self.requests: list[tuple[str, str]] = []
        proxy = self
        client = httpx.Client(timeout=30, follow_redirects=False)

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                return

            def _serve(self) -> None:
                proxy.requests.append((self.command, self.path))
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                headers = {
                    k: v
                    for k, v in self.headers.items()
                    if k.lower() not in ("host", "content-length", "connection")
                }
                answer = client.request(
                    self.command, upstream + self.path, headers=headers, content=body
                )
                self.send_response(answer.status_code)
                for k, v in answer.headers.items():
                    if k.lower() not in ("content-length", "transfer-encoding", "connection"):
                        self.send_header(k, v.replace(upstream, proxy.url))
                self.send_header("Content-Length", str(len(answer.content)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(answer.content)

            do_GET = do_HEAD = do_PUT = do_POST = do_PATCH = do_DELETE = _serve

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.host = f"127.0.0.1:{self._server.server_address[1]}"
        self.url = f"http://{self.host}"
        self._client = client
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._client.close()


def _new_key(services: Services, scopes: list[str]) -> str:
    with session_scope(services.sessions) as session:
        kwargs: dict[str, Any] = {}
        if "scopes" in inspect.signature(generate_key).parameters:
            kwargs["scopes"] = scopes
        generate_key(
            session,
            settings=services.settings,
            name="bench",
            algorithm=Algorithm.ecdsa_p256,
            **kwargs,
        )
        public = get_key(session, name="bench").public_key_pem
        save_authority(session, key_authority(name="bench", keys=[public], scopes=scopes))
    return public


async def _decide(services: Services, image: str) -> dict[str, Any]:
    try:
        from app.enforce.deadline import Deadline
        from app.enforce.outcome import DecisionRequest
        from app.enforce.pipeline import decide
    except ImportError:
        from app.enforce.decide import evaluate_image

        old = await evaluate_image(services, image=image, entrypoint=Entrypoint.admission)
        return {"flow": "evaluate_image (before the pipeline)", "codes": old.decision.codes}
    for cache in services.decisions.caches.all():
        cache.clear()
    request = DecisionRequest(image=image, entrypoint=Entrypoint.admission, deadline=Deadline(10))
    new = await decide(request, services.decisions)
    return {"flow": "pipeline.decide", "codes": list(new.codes), "cache": new.cache}


async def main(workdir: Path, *, registry_scan: bool) -> dict[str, Any]:
    registry = start_registry(workdir / "registry")
    proxy = CountingProxy(registry.url)
    database_url = f"sqlite:///{workdir / 'sealgate.db'}"
    upgrade(database_url)
    settings = load_settings(
        database_url=database_url,
        insecure_registries=[registry.host, proxy.host],
        key_encryption_key=KEK,
        log_level="WARNING",
    )
    services = Services.from_settings(settings)
    try:
        _new_key(services, [f"{proxy.host}/**"])
        image, _ = await push_random_image(services.registry, f"{proxy.host}/bench/app", tag="v1")
        await sign_image(services, image=str(image), principal=PRINCIPAL, key_name="bench")
        await upload_scan(services, image=image, report=REPORT.read_bytes(), uploaded_by="bench")
        if registry_scan:
            with session_scope(services.sessions) as session:
                session.execute(delete(ScanRecord))
        reference = f"{image.name}:v1"
        await _decide(services, reference)  # warms the client's connections and the engine
        proxy.requests.clear()
        answer = await _decide(services, reference)
        made = list(proxy.requests)
    finally:
        await services.aclose()
        proxy.stop()
        stop_registry(registry)
    return {
        **answer,
        "scan": "registry referrer only" if registry_scan else "stored upload",
        "registry_requests": len(made),
        "registry_requests_made": [f"{method} {path}" for method, path in made],
    }


if __name__ == "__main__":
    with tempfile.TemporaryDirectory(prefix="sealgate-old-flow-") as tmp:
        answer = asyncio.run(main(Path(tmp), registry_scan="--registry-scan" in sys.argv))
        print(json.dumps(answer, default=str))
    sys.exit(0)
