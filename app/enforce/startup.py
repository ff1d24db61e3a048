"""Start-up warnings about trust that is wider than it looks: rows from before scopes and
signed-identity rules existed.

Those rows keep working as they did (refusing them would break running deployments on
upgrade), but each start says which they are and how to narrow them, so an operator can:

- signing keys without scopes sign every image a ``sign:`` token may name;
- authorities without scopes vouch for every image;
- authorities without a signed-identity rule accept a signature copied from another
  repository (``signed identity: any``).

``warn_about_open_trust`` is called by the application's lifespan next to the
key-encryption-key check, and returns the warnings it logged.
"""

from __future__ import annotations

import logging

from sqlalchemy.exc import SQLAlchemyError

from app.db.session import session_scope
from app.services import Services
from app.signing.keys import unscoped_keys
from app.verify.trust import authorities_without_identity_rule, unscoped_authorities

log = logging.getLogger("sealgate.startup")


def _names(names: list[str]) -> str:
    shown = ", ".join(repr(n) for n in names[:20])
    return shown + (f" and {len(names) - 20} more" if len(names) > 20 else "")


def warn_about_open_trust(services: Services) -> list[str]:
    """Log (and return) one warning per kind of legacy row in the service's database.

    A database that cannot be queried (not migrated, unreachable) is logged and passed over,
    as in the key-encryption-key check: the health endpoint reports the database.
    """
    try:
        with session_scope(services.sessions) as session:
            keys = unscoped_keys(session)
            unscoped = unscoped_authorities(session)
            any_identity = authorities_without_identity_rule(session)
    except SQLAlchemyError as e:
        log.warning(
            "could not check stored keys and authorities at start-up",
            extra={"error": type(e).__name__},
        )
        return []
    warnings: list[str] = []
    if keys:
        warnings.append(
            f"signing key(s) {_names(keys)} have no scopes and sign every image a sign: token "
            "names (stored before keys had scopes); narrow each with 'sealgate key set-scopes "
            "NAME --scope GLOB' (or --scope '**' to keep every image on purpose)"
        )
    if unscoped:
        warnings.append(
            f"authority(ies) {_names(unscoped)} have no scopes and vouch for every image "
            "(stored before scopes were required); re-add each with --scope GLOB, or "
            "--scope '**' to keep every image on purpose"
        )
    if any_identity:
        warnings.append(
            f"authority(ies) {_names(any_identity)} accept signatures made for any repository "
            "(stored before signed-identity rules); re-add each with --signed-identity "
            "match-repository (the default), remap, or any on purpose"
        )
    for warning in warnings:
        log.warning(warning)
    return warnings
