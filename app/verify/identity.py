"""Signed identity: which repository a verified signature says it was made for.

A signature binds a digest; the payload also names where the signer meant it to be used:
the simple-signing ``critical.identity.docker-reference`` and the ``name`` of the in-toto
statement subjects that carry the digest. Bytes and their signature can be copied to any
repository with plain registry pushes, so an authority may require that name to be the
repository being verified, as containers-policy's ``signedIdentity`` does:

- ``match-repository`` (the default for new authorities, containers-policy
  ``matchRepository``): the signed name, without tag or digest, must be the verified
  repository. A payload that names no repository (cosign v3 image signatures leave the
  subject unnamed; message-signature bundles carry no payload) does not match.
- ``remap`` (containers-policy ``remapIdentity``): as ``match-repository``, and where the
  verified repository starts with a ``prefix`` (whole path components), the same name with
  that prefix replaced by its ``signed_prefix`` is accepted too: a mirror or a copy made by
  ``sealgate copy``/``import`` verifies with the signatures of its source. The longest
  matching prefix wins.
- ``any``: the signed name is not looked at (cosign's and policy-controller's behaviour,
  and that of authorities stored before this rule existed).

Names are compared after Docker's normalisation (``app.oci.refs``): ``index.docker.io/x`` is
``docker.io/library/x``. A signed name that is not an image reference matches nothing.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from app.errors import InputError, VerificationError
from app.limits import MAX_REMAPS
from app.oci.refs import ImageRef


class IdentityMode(StrEnum):
    """How an authority checks the signed identity against the verified repository."""

    match_repository = "match-repository"
    remap = "remap"
    any = "any"


MODES = ", ".join(m.value for m in IdentityMode)


def _valid_prefix(text: str, what: str) -> str:
    """``text`` as a normalised ``registry[/path]`` prefix; ``InputError`` otherwise.

    Normalised as the start of an image name (``index.docker.io/acme`` is
    ``docker.io/acme``), so it compares with the names it is applied to.
    """
    prefix = text.strip().rstrip("/")
    if not prefix or "*" in prefix or "@" in prefix or any(c.isspace() for c in prefix):
        raise InputError(
            f"identity remap {what} {text[:200]!r} must be a registry/repository prefix "
            "(no globs, digests or white space)",
            code="input.signed_identity",
        )
    try:
        name = ImageRef.parse(prefix + "/x0").name
    except InputError as e:
        raise InputError(
            f"identity remap {what} {text[:200]!r} is not a registry/repository prefix "
            f"(no tag): {e.message}",
            code="input.signed_identity",
        ) from e
    return name.removesuffix("/x0")


@dataclass(frozen=True)
class IdentityRemap:
    """Verified names under ``prefix`` may be signed for the same name under ``signed_prefix``."""

    prefix: str
    signed_prefix: str

    @classmethod
    def parse(cls, text: str) -> IdentityRemap:
        """``PREFIX=SIGNED_PREFIX`` (both normalised ``registry/repository`` prefixes)."""
        prefix, sep, signed = text.partition("=")
        if not sep:
            raise InputError(
                f"identity remap {text[:200]!r} is not PREFIX=SIGNED_PREFIX",
                code="input.signed_identity",
            )
        return cls.of(prefix=prefix, signed_prefix=signed)

    @classmethod
    def of(cls, *, prefix: str, signed_prefix: str) -> IdentityRemap:
        return cls(
            prefix=_valid_prefix(prefix, "prefix"),
            signed_prefix=_valid_prefix(signed_prefix, "signed prefix"),
        )

    def covers(self, name: str) -> bool:
        return name == self.prefix or name.startswith(self.prefix + "/")

    def apply(self, name: str) -> str:
        return self.signed_prefix + name[len(self.prefix) :]

    def to_json(self) -> dict[str, str]:
        return {"prefix": self.prefix, "signed_prefix": self.signed_prefix}


def _signed_name(text: str) -> str | None:
    try:
        return ImageRef.parse(text).name
    except InputError:
        return None


@dataclass(frozen=True)
class SignedIdentityRule:
    """What the signed identity of a signature must be for an authority to accept it."""

    mode: IdentityMode
    remaps: tuple[IdentityRemap, ...] = ()

    @classmethod
    def parse(
        cls, mode: str | None, remaps: Sequence[str | IdentityRemap] = ()
    ) -> SignedIdentityRule:
        """The rule a caller asked for: ``mode`` (default ``match-repository``, or ``remap``
        when remaps are given) and ``PREFIX=SIGNED_PREFIX`` remaps; ``InputError`` otherwise."""
        parsed = tuple(
            r if isinstance(r, IdentityRemap) else IdentityRemap.parse(r) for r in remaps
        )
        if mode is None:
            chosen = IdentityMode.remap if parsed else IdentityMode.match_repository
        else:
            try:
                chosen = IdentityMode(mode)
            except ValueError:
                raise InputError(
                    f"signed identity {mode[:80]!r} is not known; use one of {MODES}",
                    code="input.signed_identity",
                ) from None
        if chosen is IdentityMode.remap and not parsed:
            raise InputError(
                "signed identity 'remap' needs at least one PREFIX=SIGNED_PREFIX remap",
                code="input.signed_identity",
            )
        if chosen is not IdentityMode.remap and parsed:
            raise InputError(
                f"identity remaps go with signed identity 'remap', not {chosen.value!r}",
                code="input.signed_identity",
            )
        if len(parsed) > MAX_REMAPS:
            raise InputError(f"at most {MAX_REMAPS} identity remaps", code="input.signed_identity")
        return cls(mode=chosen, remaps=tuple(dict.fromkeys(parsed)))

    @classmethod
    def from_stored(cls, value: dict[str, Any]) -> SignedIdentityRule:
        """The rule as ``stored`` wrote it (rows are trusted: written by this module)."""
        remaps = tuple(
            IdentityRemap(prefix=r["prefix"], signed_prefix=r["signed_prefix"])
            for r in value.get("remaps", ())
        )
        return cls(mode=IdentityMode(value["mode"]), remaps=remaps)

    def stored(self) -> dict[str, Any]:
        """What goes in the ``authorities.signed_identity`` column."""
        body: dict[str, Any] = {"mode": self.mode.value}
        if self.remaps:
            body["remaps"] = [r.to_json() for r in self.remaps]
        return body

    def accepted_names(self, repository: str) -> tuple[str, ...]:
        """The signed repository names accepted for a signature of ``repository``."""
        names = [repository]
        covering = [r for r in self.remaps if r.covers(repository)]
        if covering:
            longest = max(covering, key=lambda r: len(r.prefix))
            names.append(longest.apply(repository))
        return tuple(dict.fromkeys(names))

    def check(self, signed: Iterable[str], *, repository: str, authority: str) -> None:
        """Return when the signed identities ``signed`` satisfy this rule for ``repository``
        (normalised ``registry/repository``); else raise ``VerificationError``
        (``verify.identity_mismatch``) naming both."""
        if self.mode is IdentityMode.any:
            return
        texts = list(signed)
        accepted = self.accepted_names(repository)
        if any(_signed_name(text) in accepted for text in texts):
            return
        if not texts:
            raise VerificationError(
                f"the signed payload names no repository, and authority {authority!r} requires "
                f"the signed identity to be {' or '.join(accepted)} (signed identity "
                f"{self.mode.value}; an authority with signed identity 'any' accepts unnamed "
                "payloads such as cosign v3 image signatures)",
                code="verify.identity_missing",
            )
        shown = ", ".join(repr(t[:200]) for t in texts[:4])
        raise VerificationError(
            f"the signature was made for {shown}, not for {repository}: authority "
            f"{authority!r} requires the signed identity to be {' or '.join(accepted)}",
            code="verify.identity_mismatch",
        )


MATCH_REPOSITORY = SignedIdentityRule(mode=IdentityMode.match_repository)
ANY_IDENTITY = SignedIdentityRule(mode=IdentityMode.any)
