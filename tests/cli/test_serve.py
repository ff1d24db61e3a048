"""``sealgate serve`` as a real uvicorn process, over plain HTTP and over TLS."""

from __future__ import annotations

import ssl
import subprocess
from pathlib import Path

import httpx
import pytest

from tests.fixtures.registry import free_port
from tests.fixtures.serve import start_serve, wait_until_answering
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
