"""Sigstore bundles for key signatures: a DSSE envelope in a bundle v0.3 JSON document.

The layout is cosign v3's for ``cosign sign --key`` (protobuf-specs ``Bundle``, proto3 JSON
field names)::

    {"mediaType": "application/vnd.dev.sigstore.bundle.v0.3+json",
     "verificationMaterial": {"publicKey": {"hint": <base64 SHA-256 of the DER SPKI>}},
     "dsseEnvelope": {"payload": <base64 statement>, "payloadType": "application/vnd.in-toto+json",
                      "signatures": [{"sig": <base64 signature over the DSSE PAE>}]}}

Key-signed bundles carry no transparency-log entry and no timestamp: Sealgate does not upload
key signatures to Rekor (a private key held by the service is its own trust anchor, and the
signing record in the database is the audit trail). ``tlogEntries`` is therefore omitted, as
proto3 JSON omits empty repeated fields; verifiers must be told not to require a log entry
(``cosign verify --insecure-ignore-tlog``, ``@sigstore/verify`` with ``tlogThreshold: 0``).
"""

from __future__ import annotations

import base64
import json

from app.signing.payloads import IN_TOTO_PAYLOAD_TYPE, dsse_pae
from app.signing.signers import KeySigner

BUNDLE_V03_MEDIA_TYPE = "application/vnd.dev.sigstore.bundle.v0.3+json"


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def key_dsse_bundle(*, statement: bytes, signer: KeySigner) -> bytes:
    """The bundle v0.3 JSON of ``statement`` signed by ``signer`` in a DSSE envelope.

    The signature covers ``dsse_pae("application/vnd.in-toto+json", statement)``.
    """
    signature = signer.sign(dsse_pae(IN_TOTO_PAYLOAD_TYPE, statement))
    bundle = {
        "mediaType": BUNDLE_V03_MEDIA_TYPE,
        "verificationMaterial": {"publicKey": {"hint": signer.hint}},
        "dsseEnvelope": {
            "payload": _b64(statement),
            "payloadType": IN_TOTO_PAYLOAD_TYPE,
            "signatures": [{"sig": _b64(signature)}],
        },
    }
    return json.dumps(bundle, separators=(",", ":")).encode()
