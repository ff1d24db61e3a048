"""``sealgate serve`` as a real uvicorn process, over plain HTTP and over TLS."""

from __future__ import annotations

import socket
import ssl
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from tests.fixtures.registry import free_port
from tests.fixtures.serve import start_serve, wait_until_answering
from tests.fixtures.server import ServerProcess
from tests.fixtures.tls import TlsFiles


def _serve(args: list[str], database_url: str, tmp_path: Path) -> subprocess.Popen[bytes]:
    return start_serve(args, database_url=database_url, log=tmp_path / "serve.log")


_wait = wait_until_answering


class TestServe:
    def test_plain_http(self, test_database_url: str, tmp_path: Path, stop: list) -> None:
        port = free_port()
        proc = _serve(["--port", str(port)], test_database_url, tmp_path)
        stop.append(proc)
        response = _wait(f"http://127.0.0.1:{port}/readyz", verify=False, proc=proc)
        assert response.status_code == 200
        assert response.json()["status"] == "ready"

    def test_tls(
        self, test_database_url: str, tmp_path: Path, tls_files: TlsFiles, stop: list
    ) -> None:
        port = free_port()
        proc = _serve(
            [
                "--port",
                str(port),
                "--tls-cert",
                str(tls_files.server_cert),
                "--tls-key",
                str(tls_files.server_key),
            ],
            test_database_url,
            tmp_path,
        )
        stop.append(proc)
        response = _wait(
            f"https://127.0.0.1:{port}/healthz",
            verify=ssl.create_default_context(cafile=str(tls_files.ca_cert)),
            proc=proc,
        )
        assert response.json() == {"status": "ok"}
        with pytest.raises(httpx.ConnectError):
            httpx.get(f"https://127.0.0.1:{port}/healthz", verify=True, timeout=2)

    def test_logs_are_json_lines(self, test_database_url: str, tmp_path: Path, stop: list) -> None:
        import json

        port = free_port()
        proc = _serve(["--port", str(port)], test_database_url, tmp_path)
        stop.append(proc)
        _wait(f"http://127.0.0.1:{port}/healthz", verify=False, proc=proc)
        proc.terminate()
        proc.wait(timeout=10)
        stop.clear()
        lines = [ln for ln in (tmp_path / "serve.log").read_text().splitlines() if ln.strip()]
        records = [json.loads(ln) for ln in lines]
        assert any(r.get("path") == "/healthz" and r.get("request_id") for r in records)

    def test_tls_cert_without_key_is_refused(self, sealgate) -> None:
        result = sealgate("serve", "--tls-cert", "x.pem")
        assert result.exit_code == 1
        assert "go together" in result.stderr


class TestVersionAndDb:
    def test_version(self, sealgate) -> None:
        from app import __version__

        assert sealgate("version").stdout.strip() == __version__

    def test_db_upgrade_on_a_new_sqlite_file(self, sealgate, tmp_path: Path) -> None:
        from sqlalchemy import create_engine, inspect

        url = f"sqlite:///{tmp_path / 'new.db'}"
        sealgate.env["SEALGATE_DATABASE_URL"] = url
        result = sealgate("db", "upgrade")
        assert result.exit_code == 0, result.output
        assert "signing_keys" in inspect(create_engine(url)).get_table_names()

    def test_bad_setting_is_one_line(self, sealgate) -> None:
        sealgate.env["SEALGATE_PORT"] = "not-a-port"
        result = sealgate("db", "upgrade")
        assert result.exit_code == 1
        assert result.stderr.startswith("error: invalid configuration: SEALGATE_PORT")
        assert "Traceback" not in result.output


class TestConnectionLimits:
    """``SEALGATE_MAX_CONNECTIONS`` and ``SEALGATE_KEEPALIVE_TIMEOUT`` reach uvicorn."""

    LIMIT = 8

    def test_connections_over_the_limit_get_503(self, serve: Callable[..., ServerProcess]) -> None:
        server = serve(env={"SEALGATE_MAX_CONNECTIONS": str(self.LIMIT)})
        slow: list[socket.socket] = []
        try:
            # Slow clients: each sends part of its request headers and then nothing.
            for _ in range(self.LIMIT + 2):
                conn = socket.create_connection(("127.0.0.1", server.port), timeout=5)
                conn.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
                slow.append(conn)
            time.sleep(0.5)  # let the server accept them all
            answer = httpx.get(f"{server.url}/healthz", timeout=10)
            assert answer.status_code == 503
        finally:
            for conn in slow:
                conn.close()
        deadline = time.monotonic() + 10
        while httpx.get(f"{server.url}/healthz", timeout=10).status_code != 200:
            assert time.monotonic() < deadline, "the server did not recover"
            time.sleep(0.1)

    def test_idle_keep_alive_connections_are_closed(
        self, serve: Callable[..., ServerProcess]
    ) -> None:
        server = serve(env={"SEALGATE_KEEPALIVE_TIMEOUT": "1"})
        with socket.create_connection(("127.0.0.1", server.port), timeout=10) as conn:
            conn.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            first = conn.recv(65536)
            assert first.startswith(b"HTTP/1.1 200")
            started = time.monotonic()
            conn.settimeout(4)  # uvicorn's own default would hold it for 5 s
            rest = b""
            while chunk := conn.recv(65536):
                rest += chunk
            assert time.monotonic() - started < 4
