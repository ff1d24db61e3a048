"""AdmissionReview requests: parse what the API server (or a tool) posts into a frozen model.

Accepted: an ``admission.k8s.io/v1`` or ``v1beta1`` ``AdmissionReview`` envelope, or a bare
``request`` object (kwctl, kube-review and hand-written tests often send only that; it is
answered as ``v1``). Real requests often lack ``namespace`` (cluster-scoped or minimal
tools), ``name`` (controllers create Pods with ``metadata.generateName``) and ``dryRun``;
those default. Anything else malformed (not JSON, another ``kind`` or ``apiVersion``, no
``request``, no ``uid``, a body over ``MAX_REVIEW_BYTES``) raises ``InputError`` whose
message says what is wrong. A ``request.object`` that is not a JSON object is kept as
``None``: such a request is answered (it carries no images), never refused as a crash.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from app.errors import InputError
from app.json_text import LONE_SURROGATE, find_unencodable
from app.limits import MAX_REVIEW_BYTES

# The API server refuses request bodies over 3 MiB (and etcd objects over 1.5 MiB), so a
# larger review did not come from it. The HTTP edge should stop reading at this size too.

REVIEW_KIND = "AdmissionReview"
_CODE = "input.admission_review"
_TOO_LARGE = "input.too_large"
# A JSON escape of a UTF-16 surrogate: only then can decoded text hold a lone one.
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")


class AdmissionVersion(StrEnum):
    """The AdmissionReview versions served; a review is answered in the version it came in."""

    v1 = "admission.k8s.io/v1"
    v1beta1 = "admission.k8s.io/v1beta1"


class Operation(StrEnum):
    CREATE = "CREATE"
    UPDATE = "UPDATE"
    DELETE = "DELETE"
    CONNECT = "CONNECT"


_VERSIONS = tuple(v.value for v in AdmissionVersion)
_OPERATIONS = tuple(o.value for o in Operation)


@dataclass(frozen=True, slots=True)
class GroupVersionKind:
    """``request.kind``: the kind of ``object`` (``group`` is ``""`` for the core API)."""

    group: str
    version: str
    kind: str


@dataclass(frozen=True, slots=True)
class GroupVersionResource:
    group: str
    version: str
    resource: str


@dataclass(frozen=True, slots=True)
class UserInfo:
    """Who asked: the authenticated user name and groups (empty when a tool sent none)."""

    username: str = ""
    groups: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class AdmissionRequest:
    """The ``request`` of an AdmissionReview, with every optional field defaulted.

    ``object`` and ``old_object`` are the decoded JSON objects, or None when absent, null or
    not a JSON object. ``generate_name`` comes from ``object.metadata.generateName``.
    """

    uid: str
    kind: GroupVersionKind
    resource: GroupVersionResource | None
    sub_resource: str | None
    operation: Operation
    namespace: str | None
    name: str | None
    generate_name: str | None
    user: UserInfo
    dry_run: bool
    object: Mapping[str, Any] | None
    old_object: Mapping[str, Any] | None


@dataclass(frozen=True, slots=True)
class AdmissionReview:
    """A parsed review: its request and the version asked (None for a bare request)."""

    request: AdmissionRequest
    api_version: AdmissionVersion | None

    @property
    def answer_version(self) -> AdmissionVersion:
        """The version to answer in: the one asked, ``v1`` for a bare request."""
        return self.api_version or AdmissionVersion.v1

    @classmethod
    def from_json(cls, body: bytes | str) -> AdmissionReview:
        """Parse a posted body (JSON text) into a review; raise ``InputError`` if unusable."""
        raw = body.encode("utf-8", "surrogatepass") if isinstance(body, str) else body
        if len(raw) > MAX_REVIEW_BYTES:
            raise InputError(
                f"the AdmissionReview is {len(raw)} bytes, over the {MAX_REVIEW_BYTES}-byte "
                "limit of the API server's requests",
                code=_TOO_LARGE,
            )
        try:
            data = json.loads(raw)
        except (ValueError, RecursionError) as e:
            raise _invalid(f"the body is not JSON: {str(e)[:200]}") from e
        if _SURROGATE_ESCAPE.search(raw):
            where = find_unencodable(data)
            if where is not None:
                raise _invalid(f"{where[:200]!a} is not valid Unicode text ({LONE_SURROGATE})")
        return cls.from_data(data)

    @classmethod
    def from_data(cls, data: Any) -> AdmissionReview:
        """Build a review from decoded JSON (an envelope or a bare request)."""
        if not isinstance(data, dict):
            raise _invalid("the body must be a JSON object (an AdmissionReview)")
        if _is_envelope(data):
            version = _envelope_version(data)
            request = data.get("request")
            if request is None:
                raise _invalid("the AdmissionReview has no request")
            return cls(request=_parse_request(request), api_version=version)
        return cls(request=_parse_request(data), api_version=None)


def _invalid(problem: str) -> InputError:
    return InputError(f"invalid AdmissionReview: {problem}", code=_CODE)


def _is_envelope(data: dict[str, Any]) -> bool:
    # A bare request has ``kind`` too, but as a {group, version, kind} object.
    return "request" in data or "apiVersion" in data or isinstance(data.get("kind"), str)


def _envelope_version(data: dict[str, Any]) -> AdmissionVersion:
    kind = data.get("kind")
    if kind != REVIEW_KIND:
        raise _invalid(f"kind must be {REVIEW_KIND!r}, not {_shown(kind)}")
    api_version = data.get("apiVersion")
    if api_version not in _VERSIONS:
        served = " or ".join(repr(v) for v in _VERSIONS)
        raise _invalid(f"apiVersion must be {served}, not {_shown(api_version)}")
    return AdmissionVersion(api_version)


def _parse_request(data: Any) -> AdmissionRequest:
    if not isinstance(data, dict):
        raise _invalid("request must be a JSON object")
    uid = data.get("uid")
    if not isinstance(uid, str) or not uid:
        raise _invalid(
            "request.uid is missing: the API server always sends one and the answer must echo it"
        )
    operation_text = data.get("operation")
    if operation_text not in _OPERATIONS:
        known = ", ".join(_OPERATIONS)
        raise _invalid(f"request.operation must be one of {known}, not {_shown(operation_text)}")
    operation = Operation(operation_text)
    obj = _object_or_none(data.get("object"))
    old_object = _object_or_none(data.get("oldObject"))
    return AdmissionRequest(
        uid=uid,
        kind=_parse_kind(data.get("kind"), obj or old_object),
        resource=_parse_resource(data.get("resource")),
        sub_resource=_optional_text(data, "subResource") or None,
        operation=operation,
        namespace=_optional_text(data, "namespace") or None,
        name=_optional_text(data, "name") or None,
        generate_name=_generate_name(obj),
        user=_parse_user(data.get("userInfo")),
        dry_run=_parse_dry_run(data.get("dryRun")),
        object=obj,
        old_object=old_object,
    )


def _parse_kind(value: Any, obj: Mapping[str, Any] | None) -> GroupVersionKind:
    if value is None and obj is not None:
        # Hand-written requests (gator tests) omit request.kind; the object says its own.
        api_version, kind = obj.get("apiVersion"), obj.get("kind")
        if isinstance(api_version, str) and isinstance(kind, str) and kind:
            group, _, version = api_version.rpartition("/")
            return GroupVersionKind(group=group, version=version, kind=kind)
    if not isinstance(value, dict):
        raise _invalid("request.kind must be an object {group, version, kind}")
    kind = value.get("kind")
    group, version = value.get("group", ""), value.get("version", "")
    if not isinstance(kind, str) or not kind:
        raise _invalid("request.kind.kind is missing")
    if not isinstance(group, str) or not isinstance(version, str):
        raise _invalid("request.kind.group and request.kind.version must be strings")
    return GroupVersionKind(group=group, version=version, kind=kind)


def _parse_resource(value: Any) -> GroupVersionResource | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        raise _invalid("request.resource must be an object {group, version, resource}")
    fields = (value.get("group", ""), value.get("version", ""), value.get("resource", ""))
    if not all(isinstance(f, str) for f in fields):
        raise _invalid("request.resource must be an object {group, version, resource}")
    return GroupVersionResource(group=fields[0], version=fields[1], resource=fields[2])


def _parse_user(value: Any) -> UserInfo:
    if value is None:
        return UserInfo()
    if not isinstance(value, dict):
        raise _invalid("request.userInfo must be an object")
    username = value.get("username") or ""
    groups = value.get("groups") or []
    if not isinstance(username, str):
        raise _invalid("request.userInfo.username must be a string")
    if not isinstance(groups, list) or not all(isinstance(g, str) for g in groups):
        raise _invalid("request.userInfo.groups must be a list of strings")
    return UserInfo(username=username, groups=tuple(groups))


def _parse_dry_run(value: Any) -> bool:
    if value is None:
        return False
    if not isinstance(value, bool):
        raise _invalid(f"request.dryRun must be true or false, not {_shown(value)}")
    return value


def _optional_text(data: dict[str, Any], field: str) -> str | None:
    value = data.get(field)
    if value is not None and not isinstance(value, str):
        raise _invalid(f"request.{field} must be a string")
    return value


def _object_or_none(value: Any) -> Mapping[str, Any] | None:
    return value if isinstance(value, dict) else None


def _generate_name(obj: Mapping[str, Any] | None) -> str | None:
    metadata = obj.get("metadata") if obj is not None else None
    value = metadata.get("generateName") if isinstance(metadata, dict) else None
    return value if isinstance(value, str) and value else None


def _shown(value: Any) -> str:
    """A short rendering of a wrong value for a message (never the whole of a big one)."""
    text = json.dumps(value, ensure_ascii=True) if value is not None else "nothing"
    return text if len(text) <= 80 else text[:77] + "..."
