"""Generated manifests: every object parses into the kubernetes client's models with no field
lost (a misspelt field would be), and the fields that make the webhook safe are right."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
import yaml
from kubernetes.client import ApiClient

from app.errors import InputError
from app.failure_mode import FailureMode
from app.k8s.manifests import (
    CONTAINER_PORT,
    MUTATE_PATH,
    VALIDATE_PATH,
    ManifestOptions,
    cluster_manifests,
    manifests_yaml,
    webhook_timeout,
)

CA = b"-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"
KEK = base64.b64encode(bytes(range(1, 33))).decode()
MODELS = {
    "Namespace": "V1Namespace",
    "ServiceAccount": "V1ServiceAccount",
    "Secret": "V1Secret",
    "ConfigMap": "V1ConfigMap",
    "Job": "V1Job",
    "Deployment": "V1Deployment",
    "PodDisruptionBudget": "V1PodDisruptionBudget",
    "Service": "V1Service",
    "ValidatingWebhookConfiguration": "V1ValidatingWebhookConfiguration",
    "MutatingWebhookConfiguration": "V1MutatingWebhookConfiguration",
}


def _full(**changes: Any) -> list[dict[str, Any]]:
    options = ManifestOptions(
        ca_bundle=CA, kek=KEK, database_url="postgresql+psycopg://sg@db/sg", **changes
    )
    return cluster_manifests(options)


def _parse(obj: dict[str, Any]) -> Any:
    client = ApiClient()
    return client.deserialize(json.dumps(obj), MODELS[obj["kind"]], "application/json")


def _one(objects: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    (found,) = [o for o in objects if o["kind"] == kind]
    return found


class TestModels:
    def test_every_object_parses_and_round_trips(self) -> None:
        objects = yaml.safe_load_all(manifests_yaml(_full(), header="a\n\nb"))
        kinds = []
        for obj in objects:
            model = _parse(obj)
            assert ApiClient().sanitize_for_serialization(model) == obj, obj["kind"]
            kinds.append(obj["kind"])
        assert sorted(kinds) == sorted([*MODELS, "Secret"])

    def test_a_misspelt_field_would_be_caught(self) -> None:
        deployment = _one(_full(), "Deployment")
        deployment["spec"]["replicaz"] = 2
        assert ApiClient().sanitize_for_serialization(_parse(deployment)) != deployment

    def test_without_values_the_secrets_are_left_out(self) -> None:
        objects = cluster_manifests(ManifestOptions())
        assert [o["kind"] for o in objects].count("Secret") == 0
        webhook = _one(objects, "ValidatingWebhookConfiguration")["webhooks"][0]
        assert "caBundle" not in webhook["clientConfig"]
        for obj in objects:
            _parse(obj)


class TestDeployment:
    def test_replicas_probes_hardening_and_tls(self) -> None:
        model = _parse(_one(_full(replicas=3, image="registry.lan/sealgate:1"), "Deployment"))
        assert model.spec.replicas == 3
        pod = model.spec.template.spec
        (container,) = pod.containers
        assert container.image == "registry.lan/sealgate:1"
        assert container.command == ["sealgate"]
        assert container.args == [
            "serve",
            "--tls-cert",
            "/etc/sealgate/tls/tls.crt",
            "--tls-key",
            "/etc/sealgate/tls/tls.key",
        ]
        assert (
            container.readiness_probe.http_get.path,
            container.liveness_probe.http_get.path,
        ) == (
            "/readyz",
            "/healthz",
        )
        assert container.readiness_probe.http_get.scheme == "HTTPS"
        assert container.ports[0].container_port == CONTAINER_PORT
        assert container.resources.requests and container.resources.limits
        security = container.security_context
        assert security.read_only_root_filesystem is True and security.run_as_non_root is True
        assert security.allow_privilege_escalation is False
        assert pod.security_context.run_as_non_root is True
        mounts = {m.mount_path: m.name for m in container.volume_mounts}
        volumes = {v.name: v for v in pod.volumes}
        assert volumes[mounts["/tmp"]].empty_dir is not None
        assert volumes[mounts["/etc/sealgate/tls"]].secret.secret_name == "sealgate-tls"
        assert volumes[mounts["/etc/sealgate/kek"]].secret.secret_name == "sealgate-kek"
        anti = pod.affinity.pod_anti_affinity.preferred_during_scheduling_ignored_during_execution
        assert anti[0].pod_affinity_term.topology_key == "kubernetes.io/hostname"
        assert pod.automount_service_account_token is False

    def test_service_budget_and_job_select_the_right_pods(self) -> None:
        objects = _full()
        deployment = _parse(_one(objects, "Deployment"))
        selector = deployment.spec.selector.match_labels
        service = _parse(_one(objects, "Service"))
        assert service.spec.selector == selector
        assert (service.spec.ports[0].port, service.spec.ports[0].target_port) == (443, "https")
        budget = _parse(_one(objects, "PodDisruptionBudget"))
        assert budget.spec.selector.match_labels == selector
        job = _parse(_one(objects, "Job"))
        labels = job.spec.template.metadata.labels
        # The migration Pods are never taken for webhook Pods by the Service or the budget.
        assert not all(labels.get(k) == v for k, v in selector.items())
        assert job.spec.template.spec.containers[0].args == ["db", "upgrade"]

    def test_settings(self) -> None:
        objects = _full(budget=2.5, failure_mode=FailureMode.open)
        data = _one(objects, "ConfigMap")["data"]
        assert data["SEALGATE_ADMISSION_BUDGET"] == "2.5"
        assert data["SEALGATE_FAILURE_MODE"] == "open"
        assert data["SEALGATE_PORT"] == str(CONTAINER_PORT)
        assert data["SEALGATE_KEY_ENCRYPTION_KEY_FILE"] == "/etc/sealgate/kek/kek"
        secrets = {s["metadata"]["name"]: s["data"] for s in objects if s["kind"] == "Secret"}
        assert base64.b64decode(secrets["sealgate-kek"]["kek"]).decode() == KEK
        url = base64.b64decode(secrets["sealgate-settings"]["SEALGATE_DATABASE_URL"]).decode()
        assert url == "postgresql+psycopg://sg@db/sg"


class TestWebhooks:
    @pytest.mark.parametrize(
        ("kind", "path"),
        [
            ("ValidatingWebhookConfiguration", VALIDATE_PATH),
            ("MutatingWebhookConfiguration", MUTATE_PATH),
        ],
    )
    def test_fields(self, kind: str, path: str) -> None:
        model = _parse(_one(_full(namespace="gate", budget=3), kind))
        (webhook,) = model.webhooks
        service = webhook.client_config.service
        assert (service.namespace, service.name, service.path, service.port) == (
            "gate",
            "sealgate",
            path,
            443,
        )
        assert base64.b64decode(webhook.client_config.ca_bundle) == CA
        assert webhook.failure_policy == "Fail"
        assert webhook.timeout_seconds == 4
        assert webhook.side_effects == "None"
        assert webhook.admission_review_versions == ["v1", "v1beta1"]
        assert webhook.match_policy == "Equivalent"
        (expression,) = webhook.namespace_selector.match_expressions
        assert (expression.key, expression.operator) == ("kubernetes.io/metadata.name", "NotIn")
        assert set(expression.values) == {"kube-system", "gate"}
        resources = {
            (group, resource)
            for rule in webhook.rules
            for group in rule.api_groups
            for resource in rule.resources
        }
        assert resources == {
            ("", "pods"),
            ("", "pods/ephemeralcontainers"),
            ("", "replicationcontrollers"),
            ("", "podtemplates"),
            ("apps", "deployments"),
            ("apps", "replicasets"),
            ("apps", "statefulsets"),
            ("apps", "daemonsets"),
            ("batch", "jobs"),
            ("batch", "cronjobs"),
        }
        assert all(rule.operations == ["CREATE", "UPDATE"] for rule in webhook.rules)

    def test_open_failure_mode_ignores(self) -> None:
        for kind in ("ValidatingWebhookConfiguration", "MutatingWebhookConfiguration"):
            webhook = _one(_full(failure_mode=FailureMode.open), kind)["webhooks"][0]
            assert webhook["failurePolicy"] == "Ignore"

    @pytest.mark.parametrize(("budget", "timeout"), [(3, 4), (2.5, 4), (0.2, 2), (29, 30)])
    def test_timeout_is_one_second_above_the_budget(self, budget: float, timeout: int) -> None:
        assert webhook_timeout(budget) == timeout


class TestRefused:
    @pytest.mark.parametrize(
        ("changes", "message"),
        [
            ({"namespace": "Not_A_Name"}, "not a valid Kubernetes name"),
            ({"replicas": 0}, "--replicas"),
            ({"budget": 0}, "--budget"),
            ({"budget": 29.5}, "--budget"),
            ({"image": "has space"}, "--image"),
            ({"ca_bundle": b"not pem"}, "--ca-bundle"),
        ],
    )
    def test_bad_options(self, changes: dict[str, Any], message: str) -> None:
        with pytest.raises(InputError, match=message):
            cluster_manifests(ManifestOptions(**changes))
