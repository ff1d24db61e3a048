"""Image extraction: every pod-bearing kind, every container list, the samples, UPDATE."""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from app.errors import InputError
from app.k8s.images import (
    ContainerImage,
    ContainerType,
    containers_of,
    distinct_images,
    object_images,
    request_images,
    unchanged_images,
)
from app.k8s.review import AdmissionReview, GroupVersionKind

C, INIT, E = ContainerType.container, ContainerType.init, ContainerType.ephemeral

# sample → (image, container, type, JSON pointer) in extraction order
SAMPLE_IMAGES: dict[str, list[tuple[str, str, ContainerType, str]]] = {
    "request_cronjob_create_jobTemplate.json": [
        ("ghcr.io/kubewarden/test-verify-image-signatures:signed",
         "test-verify-image-signatures", C,
         "/spec/jobTemplate/spec/template/spec/containers/0/image"),
    ],
    "request_deployment_update_with_oldObject.json": [
        ("nginx:latest", "nginx", C, "/spec/template/spec/containers/0/image"),
    ],
    "request_pod_create_by_replicaset_controller_generateName.json": [
        ("gcr.io/kubebuilder/kube-rbac-proxy:v0.8.0", "kube-rbac-proxy", C,
         "/spec/containers/0/image"),
        ("registry-testing.svc.lan/kubewarden-controller:v0.2.0", "manager", C,
         "/spec/containers/1/image"),
    ],
    "request_pod_create_ephemeral_container.json": [
        ("alpine", "sleeping-sidecar", C, "/spec/containers/0/image"),
        ("nginx", "nginx", C, "/spec/containers/1/image"),
        ("nginx", "nginx", E, "/spec/ephemeralContainers/0/image"),
    ],
    "request_pod_create_image_tag_and_digest.json": [
        ("nginx:v1.26@sha256:89102e348749bb17a6a651a4b2a17420e1a66d2a44a675b981973d49a5af3a5e",
         "nginx", C, "/spec/containers/0/image"),
    ],
    "request_pod_create_init_container.json": [
        ("nginx", "nginx", INIT, "/spec/initContainers/0/image"),
        ("alpine", "sleeping-sidecar", C, "/spec/containers/0/image"),
        ("nginx", "nginx", C, "/spec/containers/1/image"),
    ],
    "request_pod_create_minimal_no_namespace_init_container.json": [
        ("init", "init", INIT, "/spec/initContainers/0/image"),
        ("nginx", "nginx", C, "/spec/containers/0/image"),
    ],
    "review_v1_deployment_create_dryRun_true_kube-review.json": [
        ("nginx", "nginx", C, "/spec/template/spec/containers/0/image"),
    ],
    "review_v1_deployment_create_envelope.json": [
        ("ghcr.io/nginx/nginx-unprivileged:1.29.0-alpine-perl", "nginx", C,
         "/spec/template/spec/containers/0/image"),
    ],
    "review_v1_pod_create_full_envelope.json": [
        ("alpine", "sleeping-sidecar", C, "/spec/containers/0/image"),
        ("nginx", "nginx", C, "/spec/containers/1/image"),
    ],
    "review_v1beta1_pod_update_minimal_gatekeeper.yaml": [
        ("nginx", "nginx", C, "/spec/containers/0/image"),
    ],
}  # fmt: skip


def _pod_spec() -> dict[str, Any]:
    return {
        "initContainers": [{"name": "setup", "image": "registry.lan/setup:1"}],
        "containers": [
            {"name": "app", "image": "registry.lan/app:2"},
            {"name": "sidecar", "image": "registry.lan/proxy:3"},
        ],
        "ephemeralContainers": [{"name": "debugger", "image": "busybox"}],
    }


def _template() -> dict[str, Any]:
    return {"metadata": {"labels": {"app": "x"}}, "spec": _pod_spec()}


# kind → (group, the object holding _pod_spec(), the pointer of that spec)
KINDS: dict[str, tuple[str, dict[str, Any], str]] = {
    "Pod": ("", {"spec": _pod_spec()}, "/spec"),
    "Deployment": ("apps", {"spec": {"template": _template()}}, "/spec/template/spec"),
    "ReplicaSet": ("apps", {"spec": {"template": _template()}}, "/spec/template/spec"),
    "StatefulSet": ("apps", {"spec": {"template": _template()}}, "/spec/template/spec"),
    "DaemonSet": ("apps", {"spec": {"template": _template()}}, "/spec/template/spec"),
    "Job": ("batch", {"spec": {"template": _template()}}, "/spec/template/spec"),
    "CronJob": (
        "batch",
        {"spec": {"schedule": "* * * * *", "jobTemplate": {"spec": {"template": _template()}}}},
        "/spec/jobTemplate/spec/template/spec",
    ),
    "ReplicationController": ("", {"spec": {"template": _template()}}, "/spec/template/spec"),
    "PodTemplate": ("", {"template": _template()}, "/template/spec"),
}


def _load(asset: Callable[[str], Path], name: str) -> AdmissionReview:
    data = yaml.safe_load(asset(f"admission/{name}").read_text())
    request = data.get("request", data)
    request.setdefault("uid", "added-by-the-test")  # the gator sample has none
    return AdmissionReview.from_data(data)


def _resolve(obj: Any, pointer: str) -> Any:
    for part in pointer.lstrip("/").split("/"):
        obj = obj[int(part)] if isinstance(obj, list) else obj[part]
    return obj


class TestSamples:
    @pytest.mark.parametrize("name", sorted(SAMPLE_IMAGES))
    def test_finds_the_images_of_each_sample(self, asset: Callable[[str], Path], name: str) -> None:
        request = _load(asset, name).request
        found = request_images(request)
        assert [(e.image, e.container, e.type, e.path) for e in found] == SAMPLE_IMAGES[name]
        for entry in found:
            assert _resolve(request.object, entry.path) == entry.image

    def test_every_sample_is_covered(self, asset: Callable[[str], Path]) -> None:
        assert {p.name for p in asset("admission").iterdir()} == set(SAMPLE_IMAGES)

    def test_distinct_images_keep_first_seen_order(self, asset: Callable[[str], Path]) -> None:
        request = _load(asset, "request_pod_create_init_container.json").request
        entries = request_images(request)
        assert distinct_images(entries) == ("nginx", "alpine")
        assert containers_of("nginx", entries) == ("nginx", "nginx")

    def test_update_sample_image_is_unchanged(self, asset: Callable[[str], Path]) -> None:
        request = _load(asset, "request_deployment_update_with_oldObject.json").request
        assert unchanged_images(request) == {"nginx:latest"}


class TestKinds:
    @pytest.mark.parametrize("kind", sorted(KINDS))
    def test_every_pod_bearing_kind_and_container_list(self, kind: str) -> None:
        group, obj, pointer = KINDS[kind]
        found = object_images(obj, kind=GroupVersionKind(group, "v1", kind))
        assert found == (
            ContainerImage(
                "registry.lan/setup:1", "setup", INIT, f"{pointer}/initContainers/0/image"
            ),
            ContainerImage("registry.lan/app:2", "app", C, f"{pointer}/containers/0/image"),
            ContainerImage("registry.lan/proxy:3", "sidecar", C, f"{pointer}/containers/1/image"),
            ContainerImage("busybox", "debugger", E, f"{pointer}/ephemeralContainers/0/image"),
        )

    def test_the_ephemeral_containers_subresource_is_read_as_a_pod(self) -> None:
        found = object_images(
            {"spec": _pod_spec()},
            kind=GroupVersionKind("", "v1", "Pod"),
            sub_resource="ephemeralcontainers",
        )
        assert [e.image for e in found if e.type is E] == ["busybox"]

    @pytest.mark.parametrize(
        ("kind", "sub_resource"),
        [
            (GroupVersionKind("", "v1", "ConfigMap"), None),
            (GroupVersionKind("example.com", "v1", "Deployment"), None),  # a CRD of that name
            (GroupVersionKind("", "v1", "Pod"), "status"),
            (GroupVersionKind("autoscaling", "v1", "Scale"), "scale"),
        ],
    )
    def test_other_kinds_and_subresources_carry_no_images(
        self, kind: GroupVersionKind, sub_resource: str | None
    ) -> None:
        assert object_images({"spec": _pod_spec()}, kind=kind, sub_resource=sub_resource) == ()

    def test_legacy_extensions_group(self) -> None:
        obj = {"spec": {"template": _template()}}
        found = object_images(obj, kind=GroupVersionKind("extensions", "v1beta1", "Deployment"))
        assert len(found) == 4

    def test_missing_parts_and_empty_images_give_nothing(self) -> None:
        pod = GroupVersionKind("", "v1", "Pod")
        assert object_images(None, kind=pod) == ()
        assert object_images({}, kind=pod) == ()
        assert object_images({"spec": {"containers": None}}, kind=pod) == ()
        deployment = GroupVersionKind("apps", "v1", "Deployment")
        assert object_images({"spec": {}}, kind=deployment) == ()
        templated = {"spec": {"containers": [{"name": "a"}, {"name": "b", "image": ""}]}}
        assert object_images(templated, kind=pod) == ()

    @pytest.mark.parametrize(
        ("spec", "message"),
        [
            ({"containers": {"name": "a"}}, r"/spec/containers is not a list"),
            ({"containers": ["nginx"]}, r"/spec/containers/0 is not an object"),
            ({"initContainers": [{"image": 7}]}, r"/spec/initContainers/0/image is not a string"),
        ],
    )
    def test_wrong_json_types_are_refused(self, spec: Any, message: str) -> None:
        with pytest.raises(InputError, match=message):
            object_images({"spec": spec}, kind=GroupVersionKind("", "v1", "Pod"))

    @pytest.mark.parametrize(
        ("kind", "obj", "message"),
        [
            (GroupVersionKind("", "v1", "Pod"), {"spec": ["x"]}, r"/spec of this Pod \(its pod"),
            (
                GroupVersionKind("apps", "v1", "Deployment"),
                {"spec": "x"},
                r"/spec of this Deployment is not an object",
            ),
            (
                GroupVersionKind("batch", "v1", "CronJob"),
                {"spec": {"jobTemplate": {"spec": {"template": 3}}}},
                r"/spec/jobTemplate/spec/template of this CronJob is not",
            ),
        ],
    )
    def test_a_path_to_the_pod_spec_that_is_not_objects_is_refused(
        self, kind: GroupVersionKind, obj: dict[str, Any], message: str
    ) -> None:
        with pytest.raises(InputError, match=message):
            object_images(obj, kind=kind)


class TestOperations:
    def _review(self, operation: str, obj: Any, old: Any = None) -> AdmissionReview:
        return AdmissionReview.from_data(
            {
                "uid": "u",
                "kind": {"group": "apps", "version": "v1", "kind": "Deployment"},
                "operation": operation,
                "object": obj,
                "oldObject": old,
            }
        )

    def test_delete_and_connect_have_no_images(self) -> None:
        obj = KINDS["Deployment"][1]
        for operation in ("DELETE", "CONNECT"):
            assert request_images(self._review(operation, obj, obj).request) == ()

    def test_unchanged_images_on_update(self) -> None:
        old = copy.deepcopy(KINDS["Deployment"][1])
        new = copy.deepcopy(old)
        new["spec"]["replicas"] = 5
        new["spec"]["template"]["spec"]["containers"][0]["image"] = "registry.lan/app:3"
        request = self._review("UPDATE", new, old).request
        assert unchanged_images(request) == {
            "registry.lan/setup:1",
            "registry.lan/proxy:3",
            "busybox",
        }
        # The same image string moved to another container still counts as unchanged.
        new["spec"]["template"]["spec"]["initContainers"][0]["image"] = "registry.lan/proxy:3"
        assert "registry.lan/proxy:3" in unchanged_images(self._review("UPDATE", new, old).request)

    def test_nothing_is_unchanged_on_create_or_without_old_object(self) -> None:
        obj = KINDS["Deployment"][1]
        assert unchanged_images(self._review("CREATE", obj, obj).request) == frozenset()
        assert unchanged_images(self._review("UPDATE", obj, None).request) == frozenset()
