"""Registry failures: the stable ``registry.*`` codes and the one builder of their errors.

The codes are named here for the registry client's own use; their HTTP statuses and
meanings are in the catalogue (``app.error_codes``).

Every message starts with the registry and repository so that a person reading one line of a
CLI error, an API body or an audit record knows where the problem is.
"""

from __future__ import annotations

from typing import Final

from app.errors import RegistryError
from app.oci.refs import ImageRef

# No HTTP answer at all: DNS failure, refused, reset, connect time-out, TLS handshake failure,
# closed or silent before answering. One message for all ("could not be reached"), so that
# answers do not tell open ports from closed ones; the cause is logged.
UNREACHABLE: Final = "registry.unreachable"
UNAUTHORIZED: Final = "registry.unauthorized"
FORBIDDEN: Final = "registry.forbidden"
NOT_FOUND: Final = "registry.not_found"
RATE_LIMITED: Final = "registry.rate_limited"
SERVER_ERROR: Final = "registry.server_error"
DIGEST_MISMATCH: Final = "registry.digest_mismatch"
TOO_LARGE: Final = "registry.too_large"
INVALID_MANIFEST: Final = "registry.invalid_manifest"
TRUNCATED: Final = "registry.truncated"
# A whole operation over its deadline, or an answer that stopped arriving half-way.
TIMEOUT: Final = "registry.timeout"
PROTOCOL: Final = "registry.protocol"
CONFLICT: Final = "registry.conflict"
TLS_UNTRUSTED: Final = "registry.tls_untrusted"
# The registry is outside SEALGATE_REGISTRY_ALLOWLIST, or it is (or resolves to) a link-local or
# cloud metadata address: nothing was sent to it.
NOT_ALLOWED: Final = "registry.not_allowed"
# A redirect Sealgate does not follow: of an upload or a manifest push, to plain HTTP, or too many.
REDIRECT_REFUSED: Final = "registry.redirect_refused"


def registry_error(code: str, *, ref: ImageRef, problem: str) -> RegistryError:
    """A ``RegistryError`` with ``code`` whose message names ``ref``'s registry and repository."""
    return RegistryError(
        f"registry {ref.registry}, repository {ref.repository}: {problem}",
        code=code,
        details={"registry": ref.registry, "repository": ref.repository},
    )
