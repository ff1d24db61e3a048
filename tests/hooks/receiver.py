"""``VerdictReceiver``: a real HTTP receiver of Sealgate's verdict webhook, started by a test.

It checks each call's HMAC signature, records the calls (body, idempotency id) and can be
told to fail the first N calls. It runs in a thread on 127.0.0.1.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
from collections import Counter
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self


@dataclass
class Call:
    key: str
    body: dict[str, Any]
    signed: bool


@dataclass
class VerdictReceiver:
    secret: str
    fail_first: int = 0
    calls: list[Call] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                return

            def do_POST(self) -> None:
                data = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                expected = (
                    "sha256=" + hmac.new(receiver.secret.encode(), data, hashlib.sha256).hexdigest()
                )
                signed = hmac.compare_digest(self.headers.get("X-Sealgate-Signature", ""), expected)
                with receiver._lock:
                    receiver.calls.append(
                        Call(
                            key=self.headers.get("Idempotency-Key", ""),
                            body=json.loads(data),
                            signed=signed,
                        )
                    )
                    failing = receiver.fail_first > 0
                    if failing:
                        receiver.fail_first -= 1
                self.send_response(503 if failing else (200 if signed else 401))
                self.send_header("Content-Length", "0")
                self.end_headers()

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}/verdicts"

    def keys(self) -> Counter[str]:
        with self._lock:
            return Counter(c.key for c in self.calls)

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._server.shutdown()
        self._server.server_close()
