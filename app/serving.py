"""The HTTP(S) server process: uvicorn, and a TLS certificate that follows its files.

``sealgate serve --tls-cert --tls-key`` serves HTTPS, which the API server requires of
webhooks. cert-manager (or the kubelet refreshing a mounted Secret) replaces those files
while the service runs, so the certificate is reloaded without a restart: the server keeps
one ``ssl.SSLContext`` and, when the files' identity (inode, size, mtime) changes, loads the
new chain into it. OpenSSL copies the certificate into each connection when the connection
is made, so connections already open keep theirs and every new handshake gets the new one;
no request is dropped. The check runs on the server's event loop, the thread that makes
every handshake, so a handshake never sees a context half-loaded.

A pair that cannot be loaded (a half-written rotation, a key that does not match) is
refused at start with ``ConfigError``; later it is logged and the previous certificate kept
until the files are right. (OpenSSL keeps one certificate per key type in a context: a
rotation from an RSA to an EC key would serve both, so change key types with a restart.)
The pair is copied to a private temporary directory before it is
loaded, so that what was checked is exactly what goes live.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import shutil
import socket
import ssl
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from app.errors import ConfigError

logger = logging.getLogger(__name__)

# How often the certificate files are looked at: a rotation is served within about this.
CERTIFICATE_POLL_SECONDS = 1.0
# uvicorn's exit status when the server did not start.
STARTUP_FAILURE = 3

_Stamp = tuple[tuple[int, int, int, int], ...]


@dataclass(frozen=True, slots=True)
class TlsFiles:
    """A PEM certificate chain and its private key, as files."""

    cert: Path
    key: Path


class ReloadingCertificate:
    """The server's ``SSLContext``, reloaded from ``files`` by ``reload_if_changed``."""

    def __init__(self, files: TlsFiles) -> None:
        self.files = files
        self.context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self._loaded: _Stamp | None = None
        self._refused: _Stamp | None = None
        try:
            self._load(self._stamp())
        except (OSError, ssl.SSLError) as e:
            raise ConfigError(
                f"cannot serve TLS with {files.cert} and {files.key}: {_reason(e)}",
                code="config.tls",
            ) from e

    def reload_if_changed(self) -> bool:
        """Load the files again if they changed since the last load; True if a new chain went
        live. A pair that does not load is logged once and the current chain kept."""
        try:
            stamp = self._stamp()
        except OSError as e:
            logger.warning("TLS certificate files unreadable, keeping the current one: %s", e)
            return False
        if stamp in (self._loaded, self._refused):
            return False
        try:
            self._load(stamp)
        except (OSError, ssl.SSLError) as e:
            self._refused = stamp
            logger.warning(
                "TLS certificate files changed but do not load, keeping the current one: %s",
                _reason(e),
            )
            return False
        logger.info("TLS certificate reloaded from %s", self.files.cert)
        return True

    def _stamp(self) -> _Stamp:
        stats = (os.stat(self.files.cert), os.stat(self.files.key))
        return tuple((s.st_dev, s.st_ino, s.st_size, s.st_mtime_ns) for s in stats)

    def _load(self, stamp: _Stamp) -> None:
        directory = tempfile.mkdtemp(prefix="sealgate-tls-")
        try:
            cert, key = Path(directory, "tls.crt"), Path(directory, "tls.key")
            shutil.copyfile(self.files.cert, cert)
            shutil.copyfile(self.files.key, key)
            # Checked on a scratch context first: a failed load_cert_chain may leave a
            # context holding the new certificate with the old key.
            ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER).load_cert_chain(cert, key)
            self.context.load_cert_chain(cert, key)
        finally:
            shutil.rmtree(directory, ignore_errors=True)
        self._loaded = stamp


def _reason(error: Exception) -> str:
    if isinstance(error, ssl.SSLError):
        return error.reason or str(error)
    if isinstance(error, OSError) and error.strerror:
        return f"{error.filename or ''}: {error.strerror}".lstrip(": ")
    return str(error)


def serve(
    *,
    app: str,
    host: str,
    port: int,
    tls: TlsFiles | None = None,
    limit_concurrency: int | None = None,
    timeout_keep_alive: int = 5,
) -> None:
    """Serve the ASGI app factory named ``app`` (``module:function``) until stopped; over
    HTTPS with a reloading certificate when ``tls`` is given. ``limit_concurrency`` and
    ``timeout_keep_alive`` are uvicorn's. Raises ``ConfigError`` when the certificate does
    not load; exits with status 3 when the server cannot start."""
    import uvicorn

    certificate = ReloadingCertificate(tls) if tls is not None else None

    def context_factory(config: Any, default: Any) -> ssl.SSLContext:
        assert certificate is not None
        return certificate.context

    config = uvicorn.Config(
        app,
        factory=True,
        host=host,
        port=port,
        log_config=None,
        proxy_headers=False,
        ssl_context_factory=context_factory if certificate is not None else None,
        limit_concurrency=limit_concurrency,
        timeout_keep_alive=timeout_keep_alive,
    )

    class Server(uvicorn.Server):
        """uvicorn's server with the certificate watcher running beside it on its loop."""

        watcher: asyncio.Task[None] | None = None

        async def startup(self, sockets: list[socket.socket] | None = None) -> None:
            await super().startup(sockets)
            # What start-up built (the app, the policy engine, the caches) lives as long as
            # the process: keep it out of the collector's generations, so that collections
            # during requests stay short (a shorter tail on the admission path).
            gc.collect()
            gc.freeze()
            if certificate is not None:
                self.watcher = asyncio.create_task(_watch(certificate))

        async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
            if self.watcher is not None:
                self.watcher.cancel()
            await super().shutdown(sockets)

    server = Server(config)
    server.run()
    if not server.started:
        raise SystemExit(STARTUP_FAILURE)


async def _watch(certificate: ReloadingCertificate) -> None:
    while True:
        await asyncio.sleep(CERTIFICATE_POLL_SECONDS)
        certificate.reload_if_changed()
