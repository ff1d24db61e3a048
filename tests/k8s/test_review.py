"""AdmissionReview parsing: every recorded sample, the optional fields, and refused input."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from app.errors import InputError
from app.k8s.review import (
    AdmissionReview,
    AdmissionVersion,
    GroupVersionKind,
    Operation,
)
from app.limits import MAX_REVIEW_BYTES

# sample → (uid, version asked, kind, operation, namespace, name, generateName, dryRun)
SAMPLES: dict[str, tuple[str, AdmissionVersion | None, str, Operation, Any, Any, Any, bool]] = {
    "request_cronjob_create_jobTemplate.json": (
        "1299d386-525b-4032-98ae-1949f69f9cfc", None, "CronJob", Operation.CREATE,
        None, None, None, False,
    ),
    "request_deployment_update_with_oldObject.json": (
        "ab41adeb-eca2-4add-9336-c263895d3953", None, "Deployment", Operation.UPDATE,
        "default", "nginx", None, False,
    ),
    "request_pod_create_by_replicaset_controller_generateName.json": (
        "8756e33a-c52d-4307-ab43-cb7875cc3f4c", None, "Pod", Operation.CREATE,
        "kubewarden", None, "kubewarden-controller-767df6d6b-", False,
    ),
    "request_pod_create_ephemeral_container.json": (
        "1299d386-525b-4032-98ae-1949f69f9cfc", None, "Pod", Operation.CREATE,
        "default", "nginx", None, False,
    ),
    "request_pod_create_image_tag_and_digest.json": (
        "1299d386-525b-4032-98ae-1949f69f9cfc", None, "Pod", Operation.CREATE,
        None, None, None, False,
    ),
    "request_pod_create_init_container.json": (
        "1299d386-525b-4032-98ae-1949f69f9cfc", None, "Pod", Operation.CREATE,
        "default", "nginx", None, False,
    ),
    "request_pod_create_minimal_no_namespace_init_container.json": (
        "1299d386-525b-4032-98ae-1949f69f9cfc", None, "Pod", Operation.CREATE,
        None, None, None, False,
    ),
    "review_v1_deployment_create_dryRun_true_kube-review.json": (
        "2024ee9c-c374-413c-838d-e62bcb4826be", AdmissionVersion.v1, "Deployment",
        Operation.CREATE, None, "nginx", None, True,
    ),
    "review_v1_deployment_create_envelope.json": (
        "12345-67890-abcdef", AdmissionVersion.v1, "Deployment", Operation.CREATE,
        "default", None, None, False,
    ),
    "review_v1_pod_create_full_envelope.json": (
        "1299d386-525b-4032-98ae-1949f69f9cfc", AdmissionVersion.v1, "Pod", Operation.CREATE,
        "default", "nginx", None, False,
    ),
}  # fmt: skip


def _envelope(request: dict[str, Any], version: str = "admission.k8s.io/v1") -> dict[str, Any]:
    return {"apiVersion": version, "kind": "AdmissionReview", "request": request}


def _request(**fields: Any) -> dict[str, Any]:
    return {
        "uid": "u-1",
        "kind": {"group": "", "version": "v1", "kind": "Pod"},
        "operation": "CREATE",
        "object": {"spec": {"containers": [{"name": "a", "image": "nginx"}]}},
        **fields,
    }


class TestSamples:
    @pytest.mark.parametrize("name", sorted(SAMPLES))
    def test_every_sample_parses(self, asset: Callable[[str], Path], name: str) -> None:
        uid, version, kind, operation, namespace, req_name, generate_name, dry_run = SAMPLES[name]
        review = AdmissionReview.from_json(asset(f"admission/{name}").read_bytes())
        request = review.request
        assert (request.uid, review.api_version, request.kind.kind) == (uid, version, kind)
        assert request.operation is operation
        assert (request.namespace, request.name, request.generate_name) == (
            namespace,
            req_name,
            generate_name,
        )
        assert request.dry_run is dry_run
        assert review.answer_version is (version or AdmissionVersion.v1)

    def test_the_samples_are_all_covered(self, asset: Callable[[str], Path]) -> None:
        names = {p.name for p in asset("admission").iterdir()}
        assert names == set(SAMPLES) | {"review_v1beta1_pod_update_minimal_gatekeeper.yaml"}

    def test_v1beta1_sample_without_uid_is_refused_naming_the_uid(
        self, asset: Callable[[str], Path]
    ) -> None:
        # gator's hand-written input has no uid; an answer must echo one, so it is refused.
        data = yaml.safe_load(
            asset("admission/review_v1beta1_pod_update_minimal_gatekeeper.yaml").read_text()
        )
        with pytest.raises(InputError, match=r"request\.uid is missing"):
            AdmissionReview.from_data(data)
        data["request"]["uid"] = "given"
        review = AdmissionReview.from_data(data)
        assert review.api_version is AdmissionVersion.v1beta1
        # Without request.kind, the object's own apiVersion and kind are used.
        assert review.request.kind == GroupVersionKind(group="", version="v1", kind="Pod")
        assert review.request.user.username == "" and review.request.resource is None

    def test_user_groups_and_resource(self, asset: Callable[[str], Path]) -> None:
        name = "request_pod_create_by_replicaset_controller_generateName.json"
        request = AdmissionReview.from_json(asset(f"admission/{name}").read_bytes()).request
        assert request.user.username == "system:serviceaccount:kube-system:replicaset-controller"
        assert "system:serviceaccounts:kube-system" in request.user.groups
        assert request.resource is not None and request.resource.resource == "pods"


class TestFields:
    def test_bare_request_is_answered_as_v1(self) -> None:
        review = AdmissionReview.from_json(json.dumps(_request()))
        assert review.api_version is None
        assert review.answer_version is AdmissionVersion.v1

    def test_subresource_and_old_object(self) -> None:
        review = AdmissionReview.from_data(
            _envelope(_request(operation="UPDATE", subResource="ephemeralcontainers", oldObject={}))
        )
        assert review.request.sub_resource == "ephemeralcontainers"
        assert review.request.old_object == {}

    @pytest.mark.parametrize("value", ["a string", 42, ["a", "list"], None])
    def test_object_that_is_not_an_object_is_kept_as_none(self, value: Any) -> None:
        review = AdmissionReview.from_data(_envelope(_request(object=value)))
        assert review.request.object is None

    def test_delete_takes_its_kind_from_the_old_object(self) -> None:
        request = _request(operation="DELETE", object=None)
        del request["kind"]
        request["oldObject"] = {"apiVersion": "apps/v1", "kind": "Deployment"}
        review = AdmissionReview.from_data(request)
        assert review.request.kind == GroupVersionKind("apps", "v1", "Deployment")


class TestRefused:
    @pytest.mark.parametrize(
        ("body", "message"),
        [
            (b"not json {", "not JSON"),
            (b"[1, 2]", "must be a JSON object"),
            (b"[" * 100_000, "not JSON"),
            (json.dumps({**_envelope(_request()), "kind": "Pod"}).encode(), "kind must be"),
            (json.dumps(_envelope(_request(), "admission.k8s.io/v2")).encode(), "apiVersion must"),
            (json.dumps({"apiVersion": "admission.k8s.io/v1"}).encode(), "kind must be"),
            (
                json.dumps(
                    {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview"}
                ).encode(),
                "has no request",
            ),
            (json.dumps(_envelope(_request(uid=""))).encode(), r"request\.uid is missing"),
            (json.dumps(_envelope({"operation": "CREATE"})).encode(), r"request\.uid"),
            (json.dumps(_envelope(_request(operation="PATCH"))).encode(), "operation must be"),
            (json.dumps(_envelope(_request(dryRun="yes"))).encode(), "dryRun must be"),
            (json.dumps(_envelope(_request(namespace=5))).encode(), "namespace must be"),
            (json.dumps(_envelope(_request(userInfo={"groups": "g"}))).encode(), "groups"),
            (json.dumps(_envelope(_request(kind="Pod"))).encode(), r"request\.kind must be"),
            (json.dumps(_envelope(_request(resource=[]))).encode(), r"request\.resource"),
            (b'{"request": {"uid": "\\ud800", "operation": "CREATE"}}', "not valid Unicode"),
        ],
    )
    def test_bad_input_raises_input_error(self, body: bytes, message: str) -> None:
        with pytest.raises(InputError, match=message) as caught:
            AdmissionReview.from_json(body)
        assert caught.value.http_status == 400
        assert caught.value.code == "input.admission_review"

    def test_a_body_over_3_mib_is_refused_before_parsing(self) -> None:
        request = _request()
        request["object"]["metadata"] = {"annotations": {"big": "x" * MAX_REVIEW_BYTES}}
        with pytest.raises(InputError, match="over the 3145728-byte limit") as caught:
            AdmissionReview.from_json(json.dumps(_envelope(request)))
        assert caught.value.code == "input.too_large"
        assert caught.value.http_status == 413

    def test_a_surrogate_pair_escape_is_fine(self) -> None:
        body = json.dumps(_envelope(_request(name="\U0001f600")), ensure_ascii=True)
        assert "\\ud83d" in body
        assert AdmissionReview.from_json(body).request.name == "\U0001f600"
