"""Run ``tests/sigstore_local/verify.js`` (npm ``@sigstore/verify``) on a key-signed bundle.

An independent verifier: it shares no code with Sealgate. Key bundles need no Fulcio, Rekor
or TSA, so an empty trusted root is given and every threshold is 0 (verify.js's default with
``--key``).
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

SIGSTORE_LOCAL = Path(__file__).resolve().parents[1] / "sigstore_local"
EMPTY_TRUSTED_ROOT = {
    "mediaType": "application/vnd.dev.sigstore.trustedroot+json;version=0.1",
    "tlogs": [],
    "certificateAuthorities": [],
    "ctlogs": [],
    "timestampAuthorities": [],
}


def verify_key_bundle(bundle: bytes, *, public_pem: str, workdir: Path) -> dict[str, Any]:
    """verify.js's JSON answer (``ok`` true or false) for ``bundle`` against ``public_pem``."""
    node = shutil.which("node")
    if node is None or not (SIGSTORE_LOCAL / "node_modules" / "@sigstore" / "verify").is_dir():
        pytest.fail("node and tests/sigstore_local/node_modules are needed: run `make node-tools`")
    (workdir / "bundle.json").write_bytes(bundle)
    (workdir / "key.pem").write_text(public_pem)
    (workdir / "root.json").write_text(json.dumps(EMPTY_TRUSTED_ROOT))
    command = [node, str(SIGSTORE_LOCAL / "verify.js"), "--bundle", "bundle.json"]
    command += ["--trusted-root", "root.json", "--key", "key.pem"]
    run = subprocess.run(
        command,
        cwd=workdir,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    answer: dict[str, Any] = json.loads(run.stdout.strip().splitlines()[-1])
    assert (run.returncode == 0) == (answer["ok"] is True), run.stdout + run.stderr
    return answer
