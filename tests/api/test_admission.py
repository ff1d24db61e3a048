"""The admission webhooks in process: samples, kinds, UPDATE, dry run, mutation, bad input.

The images live in the real test registry; signatures are made with a stored key that an
authority trusts for the registry. HTTPS end to end, dead and slow registries are in
``tests/enforce/test_admission_https.py``.
"""

from __future__ import annotations

import base64
import copy
import json
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jsonpatch
import pytest
import yaml
from fastapi.testclient import TestClient
from sqlalchemy import select

from app.audit.query import AuditRecordView, get_record
from app.audit.verification import ChainReport
from app.audit.verification import verify_chain as verify_audit_chain
from app.auth.scopes import Scope
from app.auth.tokens import Principal
from app.config import Settings
from app.db.models import AuditRecord, Decision
from app.db.session import session_scope
from app.enforce.scans import upload_scan
from app.enforce.sign import sign_image
from app.oci.refs import ImageRef
from app.services import Services
from tests.enforce.conftest import recorded_input, trust_new_key
from tests.fixtures.images import push_random_image
from tests.fixtures.registry import RegistryProcess

ADMIN = Principal(name="test", scopes=(Scope.parse("admin"),))
CRITICAL_REPORT = "trivy/dd_trivy_schema2_image_os_and_jar.json"
SAMPLES = sorted(
    p.name
    for p in (Path(__file__).parents[1] / "assets" / "admission").iterdir()
    if p.suffix in (".json", ".yaml")
)


def review(
    kind: str,
    obj: dict[str, Any],
    *,
    operation: str = "CREATE",
    old: dict[str, Any] | None = None,
    dry_run: bool = False,
    group: str = "apps",
    namespace: str | None = "prod",
    api_version: str = "admission.k8s.io/v1",
) -> dict[str, Any]:
    request: dict[str, Any] = {
        "uid": str(uuid.uuid4()),
        "kind": {
            "group": "" if kind in ("Pod", "PodTemplate") else group,
            "version": "v1",
            "kind": kind,
        },
        "resource": {"group": "", "version": "v1", "resource": kind.lower() + "s"},
        "operation": operation,
        "userInfo": {"username": "alice", "groups": ["dev"]},
        "object": obj,
        "dryRun": dry_run,
    }
    if namespace is not None:
        request["namespace"] = namespace
    if old is not None:
        request["oldObject"] = old
    return {"apiVersion": api_version, "kind": "AdmissionReview", "request": request}


def pod_spec(*images: str, init: tuple[str, ...] = ()) -> dict[str, Any]:
    return {
        "containers": [{"name": f"c{i}", "image": image} for i, image in enumerate(images)],
        "initContainers": [{"name": f"i{i}", "image": image} for i, image in enumerate(init)],
    }


def deployment(*images: str, replicas: int = 2, init: tuple[str, ...] = ()) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web", "namespace": "prod"},
        "spec": {"replicas": replicas, "template": {"spec": pod_spec(*images, init=init)}},
    }


def cronjob(*images: str, init: tuple[str, ...] = ()) -> dict[str, Any]:
    template = {"spec": pod_spec(*images, init=init)}
    return {
        "apiVersion": "batch/v1",
        "kind": "CronJob",
        "metadata": {"name": "nightly"},
        "spec": {"schedule": "0 1 * * *", "jobTemplate": {"spec": {"template": template}}},
    }


@pytest.fixture
def settings(settings: Settings) -> Settings:
    """The suite's settings with a budget no loaded machine runs out of: these tests are
    about what is decided (running out of time is tested in test_admission_https.py)."""
    return settings.model_copy(update={"admission_budget": 25.0})


@pytest.fixture
def trusted_key(services: Services, registry: RegistryProcess) -> str:
    trust_new_key(services, scope=f"{registry.host}/**")
    return "ci"


def tagged(image: ImageRef) -> str:
    return f"{image.registry}/{image.repository}:{image.tag}"


async def signed(services: Services, repo: str) -> ImageRef:
    image = await pushed(services, repo)
    await sign_image(services, image=str(image), principal=ADMIN, key_name="ci")
    # The app serves in the TestClient's own loop: it must build its own registry client.
    await services.close_registry()
    return image


async def pushed(services: Services, repo: str) -> ImageRef:
    image, _ = await push_random_image(services.registry, repo)
    await services.close_registry()
    return image


def post(client: TestClient, body: Any, *, mutate: bool = False) -> dict[str, Any]:
    path = "/admission/mutate" if mutate else "/admission/validate"
    response = client.post(path, json=body)
    assert response.status_code == 200, response.text
    answer: dict[str, Any] = response.json()
    return answer


def recorded(services: Services) -> list[Decision]:
    with session_scope(services.sessions) as session:
        return list(session.scalars(select(Decision).order_by(Decision.id)))


def audit_records(services: Services, *, kind: str) -> list[AuditRecordView]:
    with session_scope(services.sessions) as session:
        rows = session.scalars(
            select(AuditRecord).where(AuditRecord.kind == kind).order_by(AuditRecord.seq)
        )
        return [AuditRecordView.from_row(row) for row in rows]


def verify_chain(services: Services) -> ChainReport:
    with session_scope(services.sessions) as session:
        return verify_audit_chain(session, key=None)


class TestSamples:
    @pytest.mark.parametrize("name", SAMPLES)
    def test_every_sample_is_answered(
        self, name: str, client: TestClient, asset: Callable[[str], Path]
    ) -> None:
        text = asset(f"admission/{name}").read_text()
        body = yaml.safe_load(text) if name.endswith(".yaml") else json.loads(text)
        request = body.get("request", body)
        request.setdefault("uid", "added-by-the-test")  # the gatekeeper sample has none
        answer = post(client, body)
        asked = body.get("apiVersion") if "request" in body else "admission.k8s.io/v1"
        assert answer["apiVersion"] == asked
        assert answer["kind"] == "AdmissionReview"
        assert answer["response"]["uid"] == request["uid"]
        assert isinstance(answer["response"]["allowed"], bool)


class TestWhatIsAllowedAtOnce:
    def test_delete_connect_no_images_and_other_kinds(self, client: TestClient) -> None:
        gone = review("Deployment", deployment("127.0.0.1:1/never/asked:1"), operation="DELETE")
        config = review("ConfigMap", {"kind": "ConfigMap", "data": {"a": "b"}}, group="")
        empty = review("Deployment", deployment())
        for body in (gone, config, empty):
            answer = post(client, body)["response"]
            assert answer["allowed"] is True, answer


@pytest.mark.usefixtures("trusted_key")
class TestDecisions:
    async def test_signed_deployment_allowed_unsigned_init_container_denied(
        self, services: Services, client: TestClient, unique_repo: Callable[[str], str]
    ) -> None:
        good = await signed(services, unique_repo("web"))
        bad = await pushed(services, unique_repo("setup"))

        allowed = post(client, review("Deployment", deployment(tagged(good))))["response"]
        denied = post(
            client, review("CronJob", cronjob(tagged(good), init=(tagged(bad),)), group="batch")
        )["response"]

        assert allowed["allowed"] is True, allowed
        assert denied["allowed"] is False
        assert denied["status"]["code"] == 403
        message = denied["status"]["message"]
        assert tagged(bad) in message and "signature" in message
        assert tagged(good) not in message

    async def test_a_critical_vulnerability_is_denied_naming_the_cve(
        self,
        services: Services,
        client: TestClient,
        unique_repo: Callable[[str], str],
        asset: Callable[[str], Path],
    ) -> None:
        image = await signed(services, unique_repo("web"))
        report = asset(CRITICAL_REPORT).read_bytes()
        await upload_scan(services, image=image, report=report, uploaded_by="t")
        await services.close_registry()

        denied = post(client, review("Deployment", deployment(tagged(image))))["response"]

        assert denied["allowed"] is False
        assert "CVE-" in denied["status"]["message"]
        assert "vulnerability.severity" in denied["status"]["message"]

    async def test_update_that_only_scales_warns_update_that_changes_the_image_denies(
        self, services: Services, client: TestClient, unique_repo: Callable[[str], str]
    ) -> None:
        unsigned = await pushed(services, unique_repo("web"))
        other = await pushed(services, unique_repo("web2"))
        running = deployment(tagged(unsigned), replicas=2)

        scaled = post(
            client,
            review(
                "Deployment",
                deployment(tagged(unsigned), replicas=5),
                operation="UPDATE",
                old=running,
            ),
        )["response"]
        changed = post(
            client,
            review("Deployment", deployment(tagged(other)), operation="UPDATE", old=running),
        )["response"]

        assert scaled["allowed"] is True
        assert any(tagged(unsigned) in w and "already running" in w for w in scaled["warnings"])
        assert changed["allowed"] is False
        assert tagged(other) in changed["status"]["message"]

    async def test_a_dry_run_is_decided_and_recorded_as_one(
        self, services: Services, client: TestClient, unique_repo: Callable[[str], str]
    ) -> None:
        image = await signed(services, unique_repo("web"))
        body = review("Deployment", deployment(tagged(image)), dry_run=True)

        assert post(client, body)["response"]["allowed"] is True

        services.decisions.recorder.close()  # type: ignore[union-attr]
        (row,) = [r for r in recorded(services) if r.entrypoint == "admission"]
        assert row.dry_run is True
        assert row.source == body["request"]["uid"]
        assert row.actor == "alice" and row.actor_kind == "kubernetes"
        assert recorded_input(services, row)["kubernetes"]["containers"] == [
            {"name": "c0", "type": "container"}
        ]

    def test_an_image_that_is_not_a_reference_is_denied_and_recorded(
        self, services: Services, client: TestClient
    ) -> None:
        pod = {"apiVersion": "v1", "kind": "Pod", "spec": pod_spec("Not A Reference")}
        body = review("Pod", pod)

        answer = post(client, body)["response"]

        assert answer["allowed"] is False
        assert "'Not A Reference' is not a valid reference" in answer["status"]["message"]
        services.decisions.recorder.close()  # type: ignore[union-attr]
        (row,) = [r for r in recorded(services) if r.entrypoint == "admission"]
        assert (row.allowed, row.failure) == (False, "input.invalid_reference")
        assert (
            recorded_input(services, row)["kubernetes"]["namespace"] == body["request"]["namespace"]
        )

    async def test_a_review_is_one_audit_record_naming_every_image_and_its_input(
        self, services: Services, client: TestClient, unique_repo: Callable[[str], str]
    ) -> None:
        good = await signed(services, unique_repo("web"))
        bad = await pushed(services, unique_repo("setup"))
        body = review("Deployment", deployment(tagged(good), init=(tagged(bad),)))
        body["request"]["name"] = "web"  # as the API server sends it

        assert post(client, body)["response"]["allowed"] is False

        services.decisions.recorder.close()  # type: ignore[union-attr]
        (record,) = audit_records(services, kind="admission.decision")
        uid = body["request"]["uid"]
        assert (record.source, record.actor) == (uid, "alice")
        assert (record.namespace, record.object) == ("prod", "Deployment/web")
        assert sorted(record.images) == sorted([tagged(good), tagged(bad)])
        assert sorted(record.digests) == sorted([good.digest, bad.digest])
        assert record.decision == "denied"
        assert any("signature" in code for code in record.reasons), record.reasons
        assert record.details["operation"] == "CREATE" and record.details["images"] == 2
        assert record.latency_ms is not None and record.latency_ms > 0
        # One decision row per image, both named by the review's uid.
        rows = [r for r in recorded(services) if r.entrypoint == "admission"]
        assert sorted((r.image, r.allowed) for r in rows) == sorted(
            [(tagged(good), True), (tagged(bad), False)]
        )
        assert {r.source for r in rows} == {uid}
        # The record's input names each image's input, read back whole.
        with session_scope(services.sessions) as session:
            _, stored = get_record(session, seq=record.seq)
        assert stored is not None
        # The record's stored input: each image's own decision and its input, read whole.
        per_image = {entry["image"]: entry for entry in stored["review_inputs"]}
        assert per_image[tagged(good)]["digest"] == good.digest
        assert (per_image[tagged(good)]["allowed"], per_image[tagged(bad)]["allowed"]) == (
            True,
            False,
        )
        assert any("signature" in c for c in per_image[tagged(bad)]["codes"])
        inputs = {image: entry["input"] for image, entry in per_image.items()}
        assert inputs.keys() == {tagged(good), tagged(bad)}
        assert inputs[tagged(bad)]["kubernetes"]["containers"] == [{"name": "i0", "type": "init"}]
        assert inputs[tagged(good)] == recorded_input(
            services, next(r for r in rows if r.image == tagged(good))
        )
        assert verify_chain(services).ok

    async def test_an_unchanged_image_answered_with_a_warning_is_recorded_as_warned(
        self, services: Services, client: TestClient, unique_repo: Callable[[str], str]
    ) -> None:
        unsigned = await pushed(services, unique_repo("web"))
        running = deployment(tagged(unsigned), replicas=2)
        scaled = review(
            "Deployment", deployment(tagged(unsigned), replicas=5), operation="UPDATE", old=running
        )

        assert post(client, scaled)["response"]["allowed"] is True

        services.decisions.recorder.close()  # type: ignore[union-attr]
        (record,) = audit_records(services, kind="admission.decision")
        assert record.decision == "allowed"  # what the API server was told
        assert record.details["warned"] == 1
        assert record.details["operation"] == "UPDATE"
        assert record.reasons  # the denial's codes, answered as a warning
        (row,) = [r for r in recorded(services) if r.entrypoint == "admission"]
        assert row.allowed is False  # the image's own decision
        with session_scope(services.sessions) as session:
            _, stored = get_record(session, seq=record.seq)
        assert stored is not None
        ((image,),) = [[(e["image"], e["allowed"], e["warned"])] for e in stored["review_inputs"]]
        assert image == (tagged(unsigned), False, True)

    async def test_identical_reviews_share_their_stored_input(
        self, services: Services, client: TestClient, unique_repo: Callable[[str], str]
    ) -> None:
        image = await signed(services, unique_repo("web"))
        for _ in range(3):  # three replicas of one ReplicaSet: three reviews
            pod = {
                "kind": "Pod",
                "metadata": {"generateName": "web-"},
                "spec": pod_spec(tagged(image)),
            }
            assert post(client, review("Pod", pod))["response"]["allowed"] is True

        services.decisions.recorder.close()  # type: ignore[union-attr]
        records = audit_records(services, kind="admission.decision")
        assert len(records) == 3
        assert len({r.source for r in records}) == 3
        assert len({r.input_hash for r in records}) == 1
        assert {r.object for r in records} == {"Pod/web-"}

    def test_a_hostile_review_is_recorded_with_its_fields_cut_to_size(
        self, services: Services, client: TestClient
    ) -> None:
        # What a Pod author controls (image strings, names) and what a tool may send (a long
        # user, uid and namespace) must not keep the review, or its batch, from the trail.
        # Control characters take six bytes each in JSON; an empty image string (not an
        # image: skipped); an image pinned by sha512 (135 characters, the longest digest).
        images = [f"Not A Reference {n}\x00 " + "\x01" * 600 for n in range(30)]
        images += ["", f"127.0.0.1:1/never/there@sha512:{'ab' * 64}"]
        pod = {"apiVersion": "v1", "kind": "Pod", "spec": pod_spec(*images)}
        body = review("Pod", pod, namespace="n\x00" + "n" * 300)
        body["request"]["name"] = "p" * 600
        body["request"]["uid"] = "u" * 300
        body["request"]["userInfo"] = {"username": "a" * 300, "groups": ["g" * 300]}

        answer = post(client, body)["response"]

        assert answer["allowed"] is False
        services.decisions.recorder.close()  # type: ignore[union-attr]
        assert services.decisions.recorder.failed == 0  # type: ignore[union-attr]
        (record,) = audit_records(services, kind="admission.decision")
        assert record.decision == "denied" and len(record.images) == 31
        assert record.source.startswith("uuu") and record.actor.startswith("aaa")
        assert record.namespace is not None and record.namespace.startswith("n\ufffdn")
        assert f"sha512:{'ab' * 64}" in record.digests
        rows = [r for r in recorded(services) if r.entrypoint == "admission"]
        assert len(rows) == 31
        assert sum(r.failure == "input.invalid_reference" for r in rows) == 30
        assert {r.digest for r in rows} >= {f"sha512:{'ab' * 64}"}
        assert verify_chain(services).ok

    async def test_mutation_pins_tags_and_the_pod_then_decides_from_cache(
        self, services: Services, client: TestClient, unique_repo: Callable[[str], str]
    ) -> None:
        image = await signed(services, unique_repo("web"))
        pinned_already = f"{image.registry}/{image.repository}@{image.digest}"
        obj = deployment(tagged(image), pinned_already)

        answer = post(client, review("Deployment", obj), mutate=True)["response"]

        assert answer["allowed"] is True and answer["patchType"] == "JSONPatch"
        patch = jsonpatch.JsonPatch(json.loads(base64.b64decode(answer["patch"])))
        mutated = patch.apply(copy.deepcopy(obj))
        containers = mutated["spec"]["template"]["spec"]["containers"]
        assert containers[0]["image"] == f"{tagged(image)}@{image.digest}"
        assert containers[1]["image"] == pinned_already  # left as it was
        pod = {
            "kind": "Pod",
            "metadata": {"generateName": "web-"},
            "spec": mutated["spec"]["template"]["spec"],
        }
        hits_before = services.caches.evidence.stats.hits
        assert post(client, review("Pod", pod))["response"]["allowed"] is True
        assert services.caches.evidence.stats.hits > hits_before

    async def test_mutation_never_allows_what_validation_denies(
        self, services: Services, client: TestClient, unique_repo: Callable[[str], str]
    ) -> None:
        unsigned = await pushed(services, unique_repo("web"))
        answer = post(client, review("Deployment", deployment(tagged(unsigned))), mutate=True)
        assert answer["response"]["allowed"] is False
        assert "patch" not in answer["response"]

    def test_v1beta1_is_answered_in_v1beta1(self, client: TestClient) -> None:
        body = review("Deployment", deployment(), api_version="admission.k8s.io/v1beta1")
        answer = post(client, body)
        assert answer["apiVersion"] == "admission.k8s.io/v1beta1"

    def test_a_bare_request_is_answered(self, client: TestClient) -> None:
        body = review("Deployment", deployment())["request"]
        answer = post(client, body)
        assert answer["response"]["uid"] == body["uid"]


class TestBadInput:
    @pytest.mark.parametrize(
        "body",
        [
            b"not json",
            json.dumps(
                {"apiVersion": "admission.k8s.io/v1", "kind": "Pod", "request": {}}
            ).encode(),
            json.dumps(
                {
                    "apiVersion": "admission.k8s.io/v9",
                    "kind": "AdmissionReview",
                    "request": {"uid": "u"},
                }
            ).encode(),
            json.dumps({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview"}).encode(),
        ],
        ids=["garbage", "wrong-kind", "wrong-version", "no-request"],
    )
    def test_is_a_400_with_a_message(self, client: TestClient, body: bytes) -> None:
        response = client.post("/admission/validate", content=body)
        assert response.status_code == 400, response.text
        assert response.json()["error"]["message"]

    def test_a_3_mib_object_is_a_413(self, client: TestClient) -> None:
        # Content too large, as for any body over the service's own limit (16 MiB).
        obj = deployment()
        obj["metadata"]["annotations"] = {"big": "x" * (3 * 1024 * 1024)}
        response = client.post("/admission/validate", json=review("Deployment", obj))
        assert response.status_code == 413
        assert response.json()["error"]["code"] == "input.too_large"
        assert "limit" in response.json()["error"]["message"]

    def test_an_object_that_is_not_an_object_is_answered(self, client: TestClient) -> None:
        body = review("Deployment", deployment())
        body["request"]["object"] = "a string"
        answer = post(client, body)
        assert answer["response"]["allowed"] is True
