"""JSONPatch pins: applied with a JSONPatch library they give the pinned object."""

from __future__ import annotations

import base64
import copy
import json
from collections.abc import Callable
from pathlib import Path

import jsonpatch
import pytest
import yaml

from app.errors import InputError
from app.k8s.images import object_images, request_images
from app.k8s.patch import encode_patch, is_pinned, pin_images
from app.k8s.review import AdmissionReview, GroupVersionKind

DIGEST = "sha256:" + "ab" * 32
OTHER = "sha256:" + "cd" * 32
PINNED = "nginx:v1.26@sha256:89102e348749bb17a6a651a4b2a17420e1a66d2a44a675b981973d49a5af3a5e"


class TestPinImages:
    def test_cronjob_sample_is_pinned_at_its_path(self, asset: Callable[[str], Path]) -> None:
        raw = asset("admission/request_cronjob_create_jobTemplate.json").read_bytes()
        request = AdmissionReview.from_json(raw).request
        image = "ghcr.io/kubewarden/test-verify-image-signatures:signed"
        operations = pin_images(request_images(request), digests={image: DIGEST})
        assert operations == [
            {
                "op": "replace",
                "path": "/spec/jobTemplate/spec/template/spec/containers/0/image",
                "value": f"{image}@{DIGEST}",
            }
        ]
        patched = jsonpatch.apply_patch(copy.deepcopy(dict(request.object or {})), operations)
        spec = patched["spec"]["jobTemplate"]["spec"]["template"]["spec"]
        assert spec["containers"][0]["image"] == f"{image}@{DIGEST}"

    def test_every_container_list_of_a_pod(self, asset: Callable[[str], Path]) -> None:
        raw = asset("admission/request_pod_create_ephemeral_container.json").read_bytes()
        request = AdmissionReview.from_json(raw).request
        operations = pin_images(request_images(request), digests={"nginx": DIGEST, "alpine": OTHER})
        patched = jsonpatch.apply_patch(copy.deepcopy(dict(request.object or {})), operations)
        assert [c["image"] for c in patched["spec"]["containers"]] == [
            f"alpine@{OTHER}",
            f"nginx@{DIGEST}",
        ]
        assert patched["spec"]["ephemeralContainers"][0]["image"] == f"nginx@{DIGEST}"
        # Nothing else moved.
        for container in patched["spec"]["containers"]:
            container["image"] = container["image"].split("@")[0]
        patched["spec"]["ephemeralContainers"][0]["image"] = "nginx"
        assert patched == request.object

    @pytest.mark.parametrize("kind", ["Deployment", "StatefulSet", "DaemonSet", "ReplicaSet"])
    def test_templates(self, kind: str) -> None:
        obj = {"spec": {"template": {"spec": {"initContainers": [{"name": "i", "image": "a:1"}]}}}}
        entries = object_images(obj, kind=GroupVersionKind("apps", "v1", kind))
        patched = jsonpatch.apply_patch(obj, pin_images(entries, digests={"a:1": DIGEST}))
        assert patched["spec"]["template"]["spec"]["initContainers"][0]["image"] == f"a:1@{DIGEST}"

    def test_already_pinned_images_are_left_as_written(self, asset: Callable[[str], Path]) -> None:
        raw = asset("admission/request_pod_create_image_tag_and_digest.json").read_bytes()
        request = AdmissionReview.from_json(raw).request
        assert is_pinned(PINNED)
        assert pin_images(request_images(request), digests={PINNED: OTHER}) == []

    def test_images_without_a_digest_are_left_alone(self) -> None:
        obj = {"spec": {"containers": [{"name": "a", "image": "a:1"}, {"name": "b", "image": "b"}]}}
        entries = object_images(obj, kind=GroupVersionKind("", "v1", "Pod"))
        operations = pin_images(entries, digests={"b": DIGEST})
        assert [op["path"] for op in operations] == ["/spec/containers/1/image"]

    def test_a_malformed_digest_is_refused(self) -> None:
        obj = {"spec": {"containers": [{"name": "a", "image": "a:1"}]}}
        entries = object_images(obj, kind=GroupVersionKind("", "v1", "Pod"))
        with pytest.raises(InputError, match="digest"):
            pin_images(entries, digests={"a:1": "sha256:short"})


def test_encode_patch_is_base64_json() -> None:
    operations = [{"op": "replace", "path": "/spec/containers/0/image", "value": "a@" + DIGEST}]
    assert json.loads(base64.b64decode(encode_patch(operations))) == operations
    assert yaml.safe_load(base64.b64decode(encode_patch([]))) == []
