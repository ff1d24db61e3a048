"""Signed checkpoints of the chain: the key they are signed with, writing and checking one.

A checkpoint says "the chain passed through record ``seq`` whose hash was ``hash``". It is
signed with HMAC-SHA256 under a key derived (HKDF-SHA256, its own ``info`` label) from the
key-encryption key, so someone who can write to the database but does not hold the KEK can
neither forge a checkpoint nor move one: the signature covers its kind, seq, hash, cutoff
and time. The KEK itself never signs anything; a leaked checkpoint key reveals nothing
about it.

- A *purge* checkpoint names the last record a retention purge deleted: the first remaining
  record must follow it.
- A *head* checkpoint names the head at a moment: a later rewrite of anything before it, or
  a truncation of the tail, no longer agrees with it.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
from dataclasses import dataclass

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from sqlalchemy import select
from sqlalchemy.orm import Session

from app.audit.canonical import canonical_json
from app.audit.chain import time_text
from app.db.models import AuditCheckpoint
from app.errors import AuditError

_INFO = b"sealgate/audit-checkpoint/v1"


@dataclass(frozen=True)
class CheckpointKey:
    """The HMAC key checkpoints are signed with. Build it with ``from_kek``."""

    secret: bytes

    @classmethod
    def from_kek(cls, kek: bytes | None) -> CheckpointKey:
        """Derive the checkpoint key from the key-encryption key; ``AuditError`` (503)
        when there is none (a checkpoint nobody can check would be worthless)."""
        if kek is None:
            raise AuditError(
                "audit checkpoints need the key-encryption key: set "
                "SEALGATE_KEY_ENCRYPTION_KEY or SEALGATE_KEY_ENCRYPTION_KEY_FILE",
                code="config.no_kek",
            )
        secret = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=_INFO).derive(kek)
        return cls(secret=secret)

    def sign(
        self, *, kind: str, seq: int, hash: str, cutoff: dt.datetime | None, at: dt.datetime
    ) -> str:
        message = canonical_json(
            {
                "kind": kind,
                "seq": seq,
                "hash": hash,
                "cutoff": None if cutoff is None else time_text(cutoff),
                "created_at": time_text(at),
            }
        )
        return hmac.new(self.secret, message, hashlib.sha256).hexdigest()

    def signed(self, checkpoint: AuditCheckpoint) -> bool:
        """True when ``checkpoint``'s signature is this key's over its stored fields."""
        expected = self.sign(
            kind=checkpoint.kind,
            seq=checkpoint.seq,
            hash=checkpoint.hash,
            cutoff=checkpoint.cutoff,
            at=checkpoint.created_at,
        )
        return hmac.compare_digest(expected, checkpoint.signature)


def write_checkpoint(
    session: Session,
    *,
    key: CheckpointKey,
    kind: str,
    seq: int,
    hash: str,
    at: dt.datetime,
    cutoff: dt.datetime | None = None,
) -> AuditCheckpoint:
    """Store a signed checkpoint in the caller's transaction."""
    checkpoint = AuditCheckpoint(
        kind=kind,
        seq=seq,
        hash=hash,
        cutoff=cutoff,
        created_at=at,
        signature=key.sign(kind=kind, seq=seq, hash=hash, cutoff=cutoff, at=at),
    )
    session.add(checkpoint)
    session.flush()
    return checkpoint


def list_checkpoints(session: Session) -> list[AuditCheckpoint]:
    """Every checkpoint, oldest first."""
    return list(session.scalars(select(AuditCheckpoint).order_by(AuditCheckpoint.id)))
