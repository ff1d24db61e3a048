"""HTTPS to a real ``docker-registry`` serving TLS: trusted through the CA bundle, else refused."""

from __future__ import annotations

import os
import ssl
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import yaml

from app.errors import RegistryError
from app.oci.client import RegistryClient
from app.oci.refs import ImageRef
from tests.fixtures.images import push_random_image, registry_client, registry_settings
from tests.fixtures.registry import RegistryProcess, free_port, registry_binary, stop_registry
from tests.fixtures.tls import TlsFiles


@pytest.fixture(scope="module")
def tls_registry(
    tmp_path_factory: pytest.TempPathFactory, tls_files: TlsFiles
) -> Iterator[RegistryProcess]:
    """A registry on 127.0.0.1 that speaks only HTTPS, with a certificate from the test CA."""
    workdir = tmp_path_factory.mktemp("tls-registry")
    port = free_port()
    config = {
        "version": 0.1,
        "log": {"level": "warn", "accesslog": {"disabled": True}},
        "storage": {"filesystem": {"rootdirectory": str(workdir / "data")}},
        "http": {
            "addr": f"127.0.0.1:{port}",
            "tls": {"certificate": str(tls_files.server_cert), "key": str(tls_files.server_key)},
        },
    }
    (workdir / "config.yml").write_text(yaml.safe_dump(config))
    log_path = workdir / "registry.log"
    process = subprocess.Popen(
        [registry_binary(), "serve", str(workdir / "config.yml")],
        stdout=log_path.open("wb"),
        stderr=subprocess.STDOUT,
        env={"PATH": os.environ.get("PATH", "")},
    )
    reg = RegistryProcess(
        host=f"127.0.0.1:{port}", root=workdir, process=process, log_path=log_path
    )
    trust = ssl.create_default_context(cafile=str(tls_files.ca_cert))
    deadline = time.monotonic() + 15
    while True:
        try:
            httpx.get(f"https://{reg.host}/v2/", verify=trust, timeout=0.5)
            break
        except httpx.TransportError:
            if process.poll() is not None or time.monotonic() > deadline:
                stop_registry(reg)
                pytest.fail(f"TLS registry did not start:\n{reg.log()}")
            time.sleep(0.05)
    yield reg
    stop_registry(reg)


async def test_ca_bundle_makes_the_registry_trusted(
    tls_registry: RegistryProcess, tls_files: TlsFiles
) -> None:
    async with registry_client(tls_registry, registry_ca_bundle=tls_files.ca_cert) as client:
        ref, manifest = await push_random_image(client, f"{tls_registry.host}/tls/app")
        assert await client.resolve_digest(ImageRef.parse(f"{ref.name}:v1")) == manifest.digest


async def test_untrusted_certificate_is_refused_not_downgraded(
    tls_registry: RegistryProcess,
) -> None:
    # Loopback may use plain HTTP, but a TLS server with an unknown CA must not be downgraded.
    async with registry_client(tls_registry) as client:
        with pytest.raises(RegistryError) as caught:
            await client.resolve_digest(ImageRef.parse(f"{tls_registry.host}/tls/app:v1"))
        assert caught.value.code == "registry.tls_untrusted"
        assert "SEALGATE_REGISTRY_CA_BUNDLE" in caught.value.message


def test_unusable_ca_bundle_is_a_config_error(tmp_path: Path, registry: RegistryProcess) -> None:
    from app.errors import ConfigError

    bundle = tmp_path / "not-a-ca.pem"
    bundle.write_text("not a certificate")
    with pytest.raises(ConfigError, match="SEALGATE_REGISTRY_CA_BUNDLE"):
        RegistryClient.from_settings(registry_settings(registry, registry_ca_bundle=bundle))
