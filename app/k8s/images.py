"""The container images of a pod-bearing object, each with where it sits in the object.

Pod-bearing kinds and where their pod spec is: ``Pod`` (``spec``); ``Deployment``,
``ReplicaSet``, ``StatefulSet``, ``DaemonSet``, ``Job`` and ``ReplicationController``
(``spec.template.spec``); ``CronJob`` (``spec.jobTemplate.spec.template.spec``); and
``PodTemplate`` (``template.spec``). In each spec the images of ``containers``,
``initContainers`` and ``ephemeralContainers`` count. The ``pods/ephemeralcontainers``
subresource that ``kubectl debug`` uses sends the whole Pod with its new ephemeral
containers, so it is read as a Pod. Other kinds, and other subresources (``status``,
``scale``...), carry no images.

Each ``ContainerImage`` keeps the JSON pointer of its ``image`` field so that a JSONPatch can
pin it in place. A container without an image (allowed in templates) is skipped; a container
list or an image of the wrong JSON type is refused with ``InputError``, since the API server
never sends one.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from app.errors import InputError
from app.k8s.review import AdmissionRequest, GroupVersionKind, Operation

_SPEC = ("spec",)
_TEMPLATE = ("spec", "template", "spec")

# (API group, kind) → path of the pod spec. ``extensions`` served Deployment, ReplicaSet and
# DaemonSet before ``apps``; webhooks with ``matchPolicy: Equivalent`` see them as ``apps/v1``,
# but a bare request from a tool may still name the old group.
POD_SPEC_PATHS: dict[tuple[str, str], tuple[str, ...]] = {
    ("", "Pod"): _SPEC,
    ("", "ReplicationController"): _TEMPLATE,
    ("", "PodTemplate"): ("template", "spec"),
    ("apps", "Deployment"): _TEMPLATE,
    ("apps", "ReplicaSet"): _TEMPLATE,
    ("apps", "StatefulSet"): _TEMPLATE,
    ("apps", "DaemonSet"): _TEMPLATE,
    ("extensions", "Deployment"): _TEMPLATE,
    ("extensions", "ReplicaSet"): _TEMPLATE,
    ("extensions", "DaemonSet"): _TEMPLATE,
    ("batch", "Job"): _TEMPLATE,
    ("batch", "CronJob"): ("spec", "jobTemplate", "spec", "template", "spec"),
}
# Subresources whose object is a pod-bearing object (None: the resource itself).
POD_BEARING_SUBRESOURCES = frozenset({None, "ephemeralcontainers"})


class ContainerType(StrEnum):
    """Which list of the pod spec a container is in (the policy input names it)."""

    container = "container"
    init = "init"
    ephemeral = "ephemeral"


_CONTAINER_LISTS = (
    ("initContainers", ContainerType.init),
    ("containers", ContainerType.container),
    ("ephemeralContainers", ContainerType.ephemeral),
)


@dataclass(frozen=True, slots=True)
class ContainerImage:
    """One container's image as written (``nginx``, ``repo:tag@sha256:...``), the container's
    name and type, and ``path``, the JSON pointer (RFC 6901) of its ``image`` field."""

    image: str
    container: str
    type: ContainerType
    path: str


def is_pod_bearing(kind: GroupVersionKind, *, sub_resource: str | None = None) -> bool:
    """Whether objects of ``kind`` (through ``sub_resource``) carry container images."""
    return (kind.group, kind.kind) in POD_SPEC_PATHS and sub_resource in POD_BEARING_SUBRESOURCES


def object_images(
    obj: Mapping[str, Any] | None, *, kind: GroupVersionKind, sub_resource: str | None = None
) -> tuple[ContainerImage, ...]:
    """Every container image of ``obj`` (a ``kind`` object), init containers first, then
    containers, then ephemeral containers; empty for other kinds and for a missing object.
    Raises ``InputError`` when a container list or an image has the wrong JSON type."""
    if obj is None or not is_pod_bearing(kind, sub_resource=sub_resource):
        return ()
    path = POD_SPEC_PATHS[(kind.group, kind.kind)]
    spec: Any = obj
    for depth, key in enumerate(path):
        if not isinstance(spec, dict):
            raise _malformed(f"/{'/'.join(path[:depth])} of this {kind.kind} is not an object")
        spec = spec.get(key)
        if spec is None:
            return ()
    pointer = "/" + "/".join(path)
    if not isinstance(spec, dict):
        raise _malformed(f"{pointer} of this {kind.kind} (its pod spec) is not an object")
    found: list[ContainerImage] = []
    for field, container_type in _CONTAINER_LISTS:
        found.extend(_list_images(spec.get(field), f"{pointer}/{field}", container_type))
    return tuple(found)


def request_images(request: AdmissionRequest) -> tuple[ContainerImage, ...]:
    """The images of the request's ``object`` (none for DELETE and CONNECT)."""
    if request.operation not in (Operation.CREATE, Operation.UPDATE):
        return ()
    return object_images(request.object, kind=request.kind, sub_resource=request.sub_resource)


def distinct_images(entries: Iterable[ContainerImage]) -> tuple[str, ...]:
    """The distinct image strings of ``entries``, in first-seen order (each is decided once)."""
    return tuple(dict.fromkeys(entry.image for entry in entries))


def unchanged_images(request: AdmissionRequest) -> frozenset[str]:
    """For an UPDATE, the images of ``object`` that ``oldObject`` already runs (the same image
    string anywhere in it): a scale, a label change or a rollback to them must not be denied
    because of news about an image already admitted. Empty for every other operation."""
    if request.operation is not Operation.UPDATE or request.old_object is None:
        return frozenset()
    old = {
        entry.image
        for entry in object_images(
            request.old_object, kind=request.kind, sub_resource=request.sub_resource
        )
    }
    return frozenset(entry.image for entry in request_images(request) if entry.image in old)


def _list_images(
    containers: Any, pointer: str, container_type: ContainerType
) -> Iterable[ContainerImage]:
    if containers is None:
        return
    if not isinstance(containers, list):
        raise _malformed(f"{pointer} is not a list")
    for index, container in enumerate(containers):
        if not isinstance(container, dict):
            raise _malformed(f"{pointer}/{index} is not an object")
        image = container.get("image")
        if image is None or image == "":
            continue
        if not isinstance(image, str):
            raise _malformed(f"{pointer}/{index}/image is not a string")
        name = container.get("name")
        yield ContainerImage(
            image=image,
            container=name if isinstance(name, str) else "",
            type=container_type,
            path=f"{pointer}/{index}/image",
        )


def containers_of(image: str, entries: Sequence[ContainerImage]) -> tuple[str, ...]:
    """The names of the containers in ``entries`` that run ``image``."""
    return tuple(entry.container for entry in entries if entry.image == image)


def _malformed(problem: str) -> InputError:
    return InputError(f"invalid AdmissionReview: {problem}", code="input.admission_review")
