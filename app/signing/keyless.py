"""Keyless signing: a DSSE in-toto statement signed through Sigstore (Fulcio + Rekor).

The caller brings an OIDC identity token (a CI job's own token), so the Fulcio
certificate names the caller's identity, never Sealgate's. Which Sigstore instance
is used comes from a trust config source: ``public-good``, ``staging`` or the path
of a ``ClientTrustConfig`` JSON file (a private instance, or the local one the tests
start). The result is a Sigstore bundle v0.3 JSON whose DSSE envelope holds the
statement unchanged. Every failure of sigstore-python or of the network surfaces as
``SigningError``.
"""

from __future__ import annotations

from pathlib import Path

from sigstore.dsse import Statement
from sigstore.errors import Error as SigstoreError
from sigstore.models import ClientTrustConfig
from sigstore.oidc import IdentityError, IdentityToken
from sigstore.sign import SigningContext

from app.errors import SigningError

PUBLIC_GOOD = "public-good"
STAGING = "staging"

TrustConfigSource = str | Path
"""``"public-good"``, ``"staging"``, or the path of a ``ClientTrustConfig`` JSON file."""


def load_trust_config(source: TrustConfigSource) -> ClientTrustConfig:
    """Read the Sigstore client trust config named by ``source``.

    ``public-good`` and ``staging`` go through sigstore-python's TUF client (network);
    any other value is read as a ``ClientTrustConfig`` JSON file. Raises
    ``SigningError`` when the file is missing or malformed or TUF cannot be reached.
    """
    try:
        if source == PUBLIC_GOOD:
            return ClientTrustConfig.production()
        if source == STAGING:
            return ClientTrustConfig.staging()
        text = Path(source).read_text()
        return ClientTrustConfig.from_json(text)
    except OSError as e:
        raise SigningError(
            f"cannot read Sigstore trust config {source}: {e.strerror or e}",
            code="signing.trust_config",
        ) from e
    except Exception as e:  # TUF, JSON and protobuf errors have no common base class.
        raise SigningError(
            f"Sigstore trust config {source} is not usable: {e}", code="signing.trust_config"
        ) from e


def parse_identity_token(raw: str) -> IdentityToken:
    """Parse (not verify: Fulcio does that) an OIDC identity token for Sigstore.

    Raises ``SigningError`` when the token is malformed, lacks the claims OIDC requires
    (``iss``, ``sub``, ``aud`` = ``sigstore``, ``iat``, ``exp``) or is expired.
    """
    try:
        return IdentityToken(raw.strip())
    except IdentityError as e:
        raise SigningError(
            f"the OIDC identity token is not usable: {e}", code="signing.identity_token"
        ) from e


def sign_statement_keyless(
    *, statement: bytes, identity_token: str, trust: TrustConfigSource | ClientTrustConfig
) -> str:
    """Sign an in-toto statement keylessly and return the Sigstore bundle v0.3 JSON.

    ``statement`` is the exact JSON bytes of the in-toto Statement (they are signed
    as they are); ``identity_token`` is the caller's OIDC token; ``trust`` says which
    Sigstore instance to use (a source string/path, or an already loaded config).
    Raises ``SigningError`` for a malformed statement or token and for any failure of
    Fulcio, Rekor or the timestamp authority.
    """
    try:
        parsed = Statement(statement)
    except SigstoreError as e:
        raise SigningError(
            f"not an in-toto statement: {e}", code="signing.statement", http_status=400
        ) from e
    token = parse_identity_token(identity_token)
    config = trust if isinstance(trust, ClientTrustConfig) else load_trust_config(trust)
    try:
        context = SigningContext.from_trust_config(config)
        # cache=True is required, not an optimisation: without it sigstore-python 4.5.1
        # draws a fresh ephemeral key on every access, so the CSR and the DSSE signature
        # use different keys and Rekor refuses the entry.
        with context.signer(token, cache=True) as signer:
            bundle = signer.sign_dsse(parsed)
    except SigstoreError as e:
        raise SigningError(f"Sigstore signing failed: {e}", code="signing.sigstore") from e
    except Exception as e:  # network and HTTP errors from the Fulcio/Rekor/TSA clients
        raise SigningError(
            f"Sigstore signing failed: {type(e).__name__}: {e}", code="signing.sigstore"
        ) from e
    return bundle.to_json()
