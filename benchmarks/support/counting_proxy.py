"""A counting HTTP proxy on 127.0.0.1 in front of a registry, in its own process.

``benchmarks.admission`` names the burst's images through this proxy's address, so it
sees every registry request made for them, and counts them by repository (the part of
``/v2/<repository>/(manifests|blobs|tags|referrers)/...`` before the marker);
``benchmarks.copy_images`` counts the requests of one copy the same way. Two paths of its
own, never forwarded: ``GET /_counts`` answers ``{"counts": {repository: n}, "requests":
[[method, path], ...]}`` and ``POST /_reset`` empties them. ``CountingProxy`` starts it
from a benchmark and reads its counts.

    python -m benchmarks.support.counting_proxy UPSTREAM_HOST:PORT   # prints its port
"""

from __future__ import annotations

import http.client
import json
import subprocess
import sys
import threading
import urllib.request
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
MARKERS = ("manifests", "blobs", "tags", "referrers")
HOP_BY_HOP = ("connection", "keep-alive", "proxy-connection", "transfer-encoding")


def repository_of(path: str) -> str | None:
    parts = path.split("?")[0].split("/")
    if len(parts) < 4 or parts[1] != "v2":
        return None
    for i, part in enumerate(parts[2:], start=2):
        if part in MARKERS and i > 2:
            return "/".join(parts[2:i])
    return None


class Counts:
    def __init__(self) -> None:
        self.by_repository: Counter[str] = Counter()
        self.requests: list[tuple[str, str]] = []
        self.lock = threading.Lock()

    def add(self, method: str, path: str) -> None:
        repository = repository_of(path)
        if repository is not None:
            with self.lock:
                self.by_repository[repository] += 1
                self.requests.append((method, path))

    def snapshot(self) -> bytes:
        with self.lock:
            return json.dumps(
                {"counts": dict(self.by_repository), "requests": self.requests}
            ).encode()

    def reset(self) -> None:
        with self.lock:
            self.by_repository.clear()
            self.requests.clear()


def make_server(upstream: str) -> ThreadingHTTPServer:
    counts = Counts()
    local = threading.local()

    def upstream_connection(fresh: bool = False) -> http.client.HTTPConnection:
        conn: http.client.HTTPConnection | None = getattr(local, "conn", None)
        if conn is None or fresh:
            if conn is not None:
                conn.close()
            conn = local.conn = http.client.HTTPConnection(upstream, timeout=30)
        return conn

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            pass

        def _reply(self, status: int, body: bytes) -> None:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def _body(self) -> bytes | None:
            """The request body, by ``Content-Length`` or chunked (skopeo's PATCH)."""
            if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
                chunks = []
                while size := int(self.rfile.readline().split(b";")[0], 16):
                    chunks.append(self.rfile.read(size))
                    self.rfile.readline()
                while self.rfile.readline().strip():  # trailers
                    pass
                return b"".join(chunks)
            length = int(self.headers.get("Content-Length") or 0)
            return self.rfile.read(length) if length else None

        def _forward(self) -> None:
            if self.path == "/_counts":
                return self._reply(200, counts.snapshot())
            if self.path == "/_reset":
                counts.reset()
                return self._reply(200, b"{}")
            body = self._body()
            counts.add(self.command, self.path)
            # A header sent on several lines (skopeo's Accept) is joined, not collapsed to one.
            headers: dict[str, str] = {}
            for key, value in self.headers.items():
                if key.lower() not in HOP_BY_HOP:
                    headers[key] = f"{headers[key]}, {value}" if key in headers else value
            try:
                conn = upstream_connection()
                conn.request(self.command, self.path, body=body, headers=headers)
                response = conn.getresponse()
            except (OSError, http.client.HTTPException):
                conn = upstream_connection(fresh=True)  # a kept-alive connection was closed
                conn.request(self.command, self.path, body=body, headers=headers)
                response = conn.getresponse()
            data = response.read()
            head = self.command == "HEAD"
            self.send_response(response.status)
            for key, value in response.getheaders():
                lowered = key.lower()
                if lowered in HOP_BY_HOP or (lowered == "content-length" and not head):
                    continue
                self.send_header(key, value)  # HEAD keeps the registry's Content-Length
            if not head:
                self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            if not head:
                self.wfile.write(data)

        do_GET = do_HEAD = do_PUT = do_POST = do_PATCH = do_DELETE = _forward

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    return server


class CountingProxy:
    """This proxy in its own process (so that counting costs the benchmark's client no
    time) in front of ``upstream`` (``host:port``), and its counts."""

    def __init__(self, upstream: str) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "benchmarks.support.counting_proxy", upstream],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.process.stdout is not None
        port = int(self.process.stdout.readline())
        self.host = f"127.0.0.1:{port}"

    def counts(self) -> tuple[dict[str, int], list[tuple[str, str]]]:
        with urllib.request.urlopen(f"http://{self.host}/_counts", timeout=10) as answer:
            counted = json.load(answer)
        return counted["counts"], [(method, path) for method, path in counted["requests"]]

    def reset(self) -> None:
        request = urllib.request.Request(f"http://{self.host}/_reset", method="POST")
        with urllib.request.urlopen(request, timeout=10):
            pass

    def close(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def main() -> None:
    server = make_server(sys.argv[1])
    print(server.server_address[1], flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
