"""Signature repositories: where the signatures and scans of an image are kept, when not
next to it.

You cannot push to ``docker.io/library/nginx``; a team that vets it signs it in its own
registry. The setting ``signature_repositories`` maps image globs (the authority-scope
syntax of ``app.oci.globs``: ``*`` within a path segment, ``**`` across) to a repository::

    SEALGATE_SIGNATURE_REPOSITORIES="docker.io/library/*=registry.corp/signatures;ghcr.io/**=registry.corp/ghcr"

or, in the TOML settings file::

    [[signature_repositories]]
    pattern = "docker.io/library/*"
    repository = "registry.corp/signatures"
    append_path = true        # false: every image's evidence in the one repository (cosign)

The first pattern that matches the image name (``registry/repository``) wins. With
``append_path`` (the default) the image's repository path is appended to the signature
repository: the evidence of ``docker.io/library/nginx`` lives in
``registry.corp/signatures/library/nginx``, so images with the same digest in different
repositories keep their evidence apart. With ``append_path = false`` the repository
replaces the image's, as cosign's ``COSIGN_REPOSITORY`` does (Kyverno's ``repository``,
policy-controller's ``source.oci``); the evidence of every matching image then shares
``registry.corp/signatures``, told apart by digest.

The evidence home keeps the image's digest: referrers there name the upstream digest as
their ``subject``, the fallback index is the ``sha256-<hex>`` tag there, the legacy
signature the ``sha256-<hex>.sig`` tag there. The identity (the signed
``docker-reference``, authority scopes, the policy input) stays the image's own name.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pydantic import BaseModel, ConfigDict, field_validator

from app.errors import InputError
from app.oci.globs import glob_matches, validate_glob
from app.oci.refs import ImageRef, parse_location


class SignatureRepository(BaseModel):
    """One rule: images matching ``pattern`` keep their evidence under ``repository``."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    pattern: str
    repository: str
    append_path: bool = True

    @field_validator("pattern")
    @classmethod
    def _glob(cls, value: str) -> str:
        try:
            return validate_glob(value.strip())
        except InputError as e:
            raise ValueError(e.message) from e

    @field_validator("repository")
    @classmethod
    def _repository(cls, value: str) -> str:
        try:
            host, path = parse_location(value, what="signature repository")
        except InputError as e:
            raise ValueError(e.message) from e
        if not path:
            raise ValueError(
                f"signature repository {value!r} must be host[:port]/path, e.g. "
                "registry.corp/signatures"
            )
        return f"{host}/{path}"

    def home(self, ref: ImageRef) -> ImageRef:
        """Where ``ref``'s evidence lives under this rule (tag and digest kept)."""
        host, _, path = self.repository.partition("/")
        repository = f"{path}/{ref.repository}" if self.append_path else path
        return ImageRef(registry=host, repository=repository, tag=ref.tag, digest=ref.digest)


def parse_signature_env(text: str) -> list[dict[str, Any]]:
    """``PATTERN=REPOSITORY[;PATTERN=REPOSITORY...]`` as the TOML form's list.

    Raises ``ValueError`` naming the entry that is malformed."""
    found: list[dict[str, Any]] = []
    for entry in (e.strip() for e in text.split(";")):
        if not entry:
            continue
        pattern, sep, repository = entry.partition("=")
        if not sep or not pattern.strip() or not repository.strip():
            raise ValueError(
                f"entry {entry!r} must be PATTERN=REPOSITORY, e.g. "
                "docker.io/library/*=registry.corp/signatures"
            )
        found.append({"pattern": pattern.strip(), "repository": repository.strip()})
    return found


class SignatureRepositories:
    """The rules of the settings, answering where an image's evidence lives."""

    def __init__(self, rules: Sequence[SignatureRepository]) -> None:
        self._rules = tuple(rules)

    def home(self, ref: ImageRef) -> ImageRef:
        """Where the signatures, attestations and scans of ``ref`` are read and written:
        the first matching rule's repository, else ``ref`` itself."""
        for rule in self._rules:
            if glob_matches(rule.pattern, ref.name):
                return rule.home(ref)
        return ref
