"""AdmissionReview answers: version and uid echoed, denials sized for kubectl, warnings under
the API server's limits, patches only where they may go."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from app.k8s.response import (
    MAX_MESSAGE_CHARS,
    MAX_WARNING_CHARS,
    MAX_WARNINGS_TOTAL_CHARS,
    ImageResult,
    Reason,
    admission_response,
    denial_message,
    warning_texts,
)
from app.k8s.review import AdmissionReview

DIGEST = "sha256:" + "ab" * 32
UNSIGNED = Reason(
    code="signature.missing",
    message="no signature from a trusted authority",
    fix="sign it in CI: sealgate sign registry.lan/app:2",
)


def _review(version: str | None = "admission.k8s.io/v1", uid: str = "uid-7") -> AdmissionReview:
    request: dict[str, Any] = {
        "uid": uid,
        "kind": {"group": "", "version": "v1", "kind": "Pod"},
        "operation": "CREATE",
    }
    if version is None:
        return AdmissionReview.from_data(request)
    return AdmissionReview.from_data(
        {"apiVersion": version, "kind": "AdmissionReview", "request": request}
    )


class TestAnswer:
    @pytest.mark.parametrize(
        ("version", "answered"),
        [
            ("admission.k8s.io/v1", "admission.k8s.io/v1"),
            ("admission.k8s.io/v1beta1", "admission.k8s.io/v1beta1"),
            (None, "admission.k8s.io/v1"),
        ],
    )
    def test_answers_in_the_version_asked_and_echoes_the_uid(
        self, version: str | None, answered: str
    ) -> None:
        answer = admission_response(_review(version, uid="abc-123"), results=[])
        assert answer == {
            "apiVersion": answered,
            "kind": "AdmissionReview",
            "response": {"uid": "abc-123", "allowed": True},
        }

    def test_denial_is_403_naming_image_rule_and_fix(self) -> None:
        results = [
            ImageResult(image="registry.lan/ok:1", containers=("web",), digest=DIGEST),
            ImageResult(
                image="registry.lan/app:2", containers=("app", "init"), denials=(UNSIGNED,)
            ),
        ]
        response = admission_response(
            _review(), results=results, patch=[{"op": "replace", "path": "/x", "value": "y"}]
        )["response"]
        assert response["allowed"] is False
        assert response["status"]["code"] == 403
        assert response["status"]["message"] == (
            "registry.lan/app:2 (containers app, init): no signature from a trusted authority "
            "[signature.missing]; fix: sign it in CI: sealgate sign registry.lan/app:2"
        )
        # A denied review is never patched.
        assert "patch" not in response and "patchType" not in response

    def test_allowed_with_a_patch(self) -> None:
        operations = [{"op": "replace", "path": "/spec/containers/0/image", "value": "a@" + DIGEST}]
        response = admission_response(
            _review(), results=[ImageResult(image="a", digest=DIGEST)], patch=operations
        )["response"]
        assert response["allowed"] is True
        assert response["patchType"] == "JSONPatch"
        assert json.loads(base64.b64decode(response["patch"])) == operations

    def test_an_empty_patch_is_not_sent(self) -> None:
        response = admission_response(_review(), results=[ImageResult(image="a")], patch=[])
        assert "patchType" not in response["response"]

    def test_warnings_review_first_then_per_image(self) -> None:
        results = [ImageResult(image="a:1", warnings=("CVE-2024-1 is critical (warn mode)",))]
        response = admission_response(
            _review(), results=results, warnings=["registry b:5000 did not answer within 3 s"]
        )["response"]
        assert response["allowed"] is True
        assert response["warnings"] == [
            "registry b:5000 did not answer within 3 s",
            "a:1: CVE-2024-1 is critical (warn mode)",
        ]


class TestSizes:
    def test_many_denials_are_cut_and_counted(self) -> None:
        results = [
            ImageResult(image=f"registry.lan/team/service-{i:03d}:v1", denials=(UNSIGNED,))
            for i in range(200)
        ]
        message = denial_message(results)
        assert len(message) <= MAX_MESSAGE_CHARS
        lines = message.split("\n")
        shown = len(lines) - 1
        assert 10 < shown < 200
        assert lines[-1] == f"... and {200 - shown} more denials"
        assert lines[0].startswith("registry.lan/team/service-000:v1: ")

    def test_exactly_fitting_denials_are_not_cut(self) -> None:
        results = [ImageResult(image=f"i{n}", denials=(UNSIGNED,)) for n in range(3)]
        assert "more denial" not in denial_message(results)
        assert denial_message(results).count("\n") == 2

    def test_one_huge_reason_does_not_crowd_out_the_others(self) -> None:
        huge = Reason(code="policy.deny", message="x" * 100_000)
        results = [
            ImageResult(image="a", denials=(huge,)),
            ImageResult(image="b", denials=(UNSIGNED,)),
        ]
        message = denial_message(results)
        assert len(message) <= MAX_MESSAGE_CHARS
        assert message.split("\n")[1].startswith("b: no signature")

    def test_each_warning_is_under_the_per_warning_limit(self) -> None:
        texts = warning_texts([ImageResult(image="a", warnings=("w" * 1000,))])
        assert len(texts) == 1
        assert len(texts[0]) == MAX_WARNING_CHARS and texts[0].endswith("…")

    def test_warnings_are_cut_in_number_to_fit_the_total(self) -> None:
        results = [ImageResult(image=f"img-{i}", warnings=("y" * 300,)) for i in range(40)]
        texts = warning_texts(results)
        assert sum(len(t) for t in texts) <= MAX_WARNINGS_TOTAL_CHARS
        assert all(len(t) <= MAX_WARNING_CHARS for t in texts)
        kept = len(texts) - 1
        assert texts[-1] == f"... and {40 - kept} more warnings"

    def test_warnings_lose_control_characters_and_repeats(self) -> None:
        texts = warning_texts(
            [],
            warnings=["line one\nline two\r\x00", "line one\nline two", "bad \ud800 text", ""],
        )
        assert texts == ["line one line two", "bad ? text"]
