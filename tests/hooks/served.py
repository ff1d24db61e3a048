"""A real Sealgate for the push gate's end-to-end tests: ``sealgate serve`` (uvicorn) over TLS,
and a real ``docker-registry`` whose notifications point at it."""

from __future__ import annotations

import os
import ssl
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

from tests.fixtures.registry import RegistryProcess, start_registry, stop_process
from tests.fixtures.tls import TlsFiles

SEALGATE = str(Path(sys.executable).with_name("sealgate"))


@dataclass
class Served:
    url: str
    process: subprocess.Popen[bytes]
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


def serve_sealgate(*, env: dict[str, str], tls: TlsFiles, workdir: Path, port: int) -> Served:
    """Start ``sealgate serve`` over TLS on ``port`` with ``env`` added; wait for ``/healthz``."""
    log_path = workdir / "sealgate.log"
    command = [SEALGATE, "serve", "--port", str(port)]
    command += ["--tls-cert", str(tls.server_cert), "--tls-key", str(tls.server_key)]
    process = subprocess.Popen(
        command, env={**os.environ, **env}, stdout=log_path.open("wb"), stderr=subprocess.STDOUT
    )
    url = f"https://127.0.0.1:{port}"
    context = ssl.create_default_context(cafile=str(tls.ca_cert))
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"sealgate serve exited:\n{log_path.read_text()}")
        try:
            httpx.get(f"{url}/healthz", verify=context, timeout=1)
            return Served(url=url, process=process, log_path=log_path)
        except httpx.TransportError:
            time.sleep(0.1)
    stop_process(process)
    raise AssertionError(f"sealgate serve did not answer:\n{log_path.read_text()}")


def registry_notifying(*, port: int, secret: str, tls: TlsFiles, workdir: Path) -> RegistryProcess:
    """A real registry sending every event to the distribution hook of a Sealgate served over
    TLS on 127.0.0.1:``port`` (it need not be up yet: the registry retries). distribution 2.8
    has no CA option for an endpoint, so the registry gets the test CA as SSL_CERT_FILE."""
    endpoint = {
        "name": "sealgate",
        "url": f"https://127.0.0.1:{port}/hooks/distribution",
        "headers": {"Authorization": [f"Bearer {secret}"]},
        "timeout": "2s",
        "threshold": 3,
        "backoff": "250ms",
    }
    return start_registry(
        workdir, notifications=[endpoint], env={"SSL_CERT_FILE": str(tls.ca_cert)}
    )
