"""Kubernetes object names: the RFC 1123 label that Services and Namespaces must be."""

from __future__ import annotations

import re

from app.errors import InputError

_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")


def dns_label(value: str, *, what: str) -> str:
    """Return ``value`` if it is a valid RFC 1123 label (how Kubernetes names a Service or a
    Namespace: at most 63 lowercase letters, digits and inner dashes), else raise
    ``InputError`` naming ``what`` it was meant to be."""
    if not _LABEL.match(value):
        raise InputError(
            f"{what} {value[:80]!r} is not a valid Kubernetes name: use at most 63 lowercase "
            "letters, digits and '-', starting and ending with a letter or digit",
            code="input.k8s_name",
        )
    return value
