"""Everything a cluster needs to run Sealgate as its admission webhook, as Kubernetes objects.

``cluster_manifests`` returns, in the order they can be applied: the Namespace, the
ServiceAccount, the Secrets for the key-encryption key and for settings (each only when its
value is given: an empty Secret applied over a filled one would erase the key that decrypts
every stored signing key), the settings ConfigMap, the migration Job (``sealgate db
upgrade``: the service never migrates itself), the Deployment, its PodDisruptionBudget, the
Service, and the Validating and Mutating WebhookConfigurations.

The webhooks call ``/admission/validate`` and ``/admission/mutate`` on the Service, for
CREATE and UPDATE of every pod-bearing kind (and ``pods/ephemeralcontainers``), with
``matchPolicy: Equivalent`` so other API versions of those kinds are sent too. They skip
``kube-system`` and Sealgate's own namespace, so Sealgate never blocks its own Pods (nor the
control plane's). ``failurePolicy`` follows the failure mode and ``timeoutSeconds`` is one
second above the admission budget, so Sealgate, not the API server, decides what a slow
registry means. The serving certificate is the Secret ``sealgate-tls`` (``kubernetes.io/tls``),
made by ``sealgate k8s cert`` or by cert-manager.
"""

from __future__ import annotations

import base64
import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from app import __version__
from app.config import MAX_ADMISSION_BUDGET
from app.errors import InputError
from app.failure_mode import FailureMode
from app.k8s.names import dns_label

APP_NAME = "sealgate"
DEFAULT_NAMESPACE = "sealgate-system"
DEFAULT_IMAGE = f"sealgate:{__version__}"
CONTAINER_PORT = 8443
VALIDATE_PATH = "/admission/validate"
MUTATE_PATH = "/admission/mutate"
TLS_SECRET = "sealgate-tls"
KEK_SECRET = "sealgate-kek"
SETTINGS_NAME = "sealgate-settings"
# The API server waits at most 30 s for a webhook.
MAX_WEBHOOK_TIMEOUT = 30

_TLS_DIR = "/etc/sealgate/tls"
_KEK_DIR = "/etc/sealgate/kek"
_USER_ID = 10001
# (API group, resources) of every pod-bearing kind; app/k8s/images.py reads their objects.
WEBHOOK_RESOURCES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("", ("pods", "pods/ephemeralcontainers", "replicationcontrollers", "podtemplates")),
    ("apps", ("deployments", "replicasets", "statefulsets", "daemonsets")),
    ("batch", ("jobs", "cronjobs")),
)


@dataclass(frozen=True, slots=True)
class ManifestOptions:
    """What ``sealgate k8s manifests`` is told. ``ca_bundle`` is the PEM of the CA that signed
    the serving certificate; ``kek`` the base64 key-encryption key text; ``database_url`` the
    PostgreSQL URL (the last two become Secrets, and are left out when not given)."""

    namespace: str = DEFAULT_NAMESPACE
    image: str = DEFAULT_IMAGE
    replicas: int = 2
    budget: float = 3.0
    failure_mode: FailureMode = FailureMode.closed
    ca_bundle: bytes | None = None
    kek: str | None = None
    database_url: str | None = None


def webhook_timeout(budget: float) -> int:
    """``timeoutSeconds`` for a budget: one whole second above it, at most 30."""
    return min(math.ceil(budget) + 1, MAX_WEBHOOK_TIMEOUT)


def cluster_manifests(options: ManifestOptions) -> list[dict[str, Any]]:
    """The objects, in applying order; raises ``InputError`` for an unusable option."""
    _check(options)
    objects: list[dict[str, Any]] = [_namespace(options), _service_account(options)]
    if options.kek is not None:
        objects.append(_secret(options, KEK_SECRET, {"kek": options.kek.strip()}))
    if options.database_url is not None:
        objects.append(
            _secret(options, SETTINGS_NAME, {"SEALGATE_DATABASE_URL": options.database_url})
        )
    objects += [
        _config_map(options),
        _migration_job(options),
        _deployment(options),
        _disruption_budget(options),
        _service(options),
        _webhook_configuration(options, mutating=False),
        _webhook_configuration(options, mutating=True),
    ]
    return objects


def manifests_yaml(objects: Iterable[dict[str, Any]], *, header: str = "") -> str:
    """Multi-document YAML of ``objects`` (``header`` lines become comments on top)."""
    import yaml

    comments = "".join(f"# {line}\n".replace("# \n", "#\n") for line in header.splitlines())
    documents = [yaml.safe_dump(obj, sort_keys=False, default_flow_style=False) for obj in objects]
    return comments + "---\n" + "---\n".join(documents)


def _check(options: ManifestOptions) -> None:
    dns_label(options.namespace, what="namespace")
    if not options.image or any(c.isspace() for c in options.image):
        raise InputError(f"--image {options.image!r} is not an image reference")
    if options.replicas < 1:
        raise InputError("--replicas must be at least 1")
    if not 0 < options.budget <= MAX_ADMISSION_BUDGET:
        raise InputError(
            f"--budget must be above 0 and at most {MAX_ADMISSION_BUDGET:g} s (the API server "
            f"waits {MAX_WEBHOOK_TIMEOUT} s at most, and the webhook's timeout is one more)"
        )
    if options.ca_bundle is not None and b"-----BEGIN CERTIFICATE-----" not in options.ca_bundle:
        raise InputError("--ca-bundle is not a PEM certificate bundle")


def _metadata(options: ManifestOptions, name: str, *, namespaced: bool = True) -> dict[str, Any]:
    metadata: dict[str, Any] = {"name": name}
    if namespaced:
        metadata["namespace"] = options.namespace
    metadata["labels"] = _labels() | {"app.kubernetes.io/version": __version__}
    return metadata


def _labels(component: str = "webhook") -> dict[str, str]:
    """The labels that select the webhook's Pods (the Job's Pods have another component, so
    that neither the Service nor the budget ever counts them)."""
    return {"app.kubernetes.io/name": APP_NAME, "app.kubernetes.io/component": component}


def _namespace(options: ManifestOptions) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": _metadata(options, options.namespace, namespaced=False),
    }


def _service_account(options: ManifestOptions) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ServiceAccount",
        "metadata": _metadata(options, APP_NAME),
        # Sealgate never calls the Kubernetes API: its Pods get no token.
        "automountServiceAccountToken": False,
    }


def _secret(options: ManifestOptions, name: str, values: dict[str, str]) -> dict[str, Any]:
    data = {k: base64.b64encode(v.encode()).decode("ascii") for k, v in values.items()}
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": _metadata(options, name),
        "type": "Opaque",
        "data": data,
    }


def _config_map(options: ManifestOptions) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": _metadata(options, SETTINGS_NAME),
        "data": {
            "SEALGATE_ENV": "production",
            "SEALGATE_HOST": "0.0.0.0",
            "SEALGATE_PORT": str(CONTAINER_PORT),
            "SEALGATE_LOG_LEVEL": "INFO",
            "SEALGATE_ADMISSION_BUDGET": f"{options.budget:g}",
            "SEALGATE_FAILURE_MODE": options.failure_mode.value,
            "SEALGATE_KEY_ENCRYPTION_KEY_FILE": f"{_KEK_DIR}/kek",
        },
    }


def _pod_spec(options: ManifestOptions, container: dict[str, Any]) -> dict[str, Any]:
    """What the Deployment's and the Job's Pods share: settings, identity, hardening."""
    container = {
        "image": options.image,
        "imagePullPolicy": "IfNotPresent",
        "envFrom": [
            {"configMapRef": {"name": SETTINGS_NAME}},
            # Holds SEALGATE_DATABASE_URL; created by --database-url or by hand.
            {"secretRef": {"name": SETTINGS_NAME}},
        ],
        # Sigstore and the policy engine keep caches under $HOME: the writable /tmp.
        "env": [{"name": "HOME", "value": "/tmp"}],
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "runAsNonRoot": True,
            "capabilities": {"drop": ["ALL"]},
        },
        **container,
    }
    container["volumeMounts"] = [
        {"name": "tmp", "mountPath": "/tmp"},
        {"name": "kek", "mountPath": _KEK_DIR, "readOnly": True},
        *container.get("volumeMounts", []),
    ]
    return {
        "serviceAccountName": APP_NAME,
        "automountServiceAccountToken": False,
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": _USER_ID,
            "runAsGroup": _USER_ID,
            "fsGroup": _USER_ID,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "containers": [container],
        "volumes": [
            {"name": "tmp", "emptyDir": {"sizeLimit": "256Mi"}},
            # Without the Secret the Pod does not start: no key-encryption key, no service.
            {"name": "kek", "secret": {"secretName": KEK_SECRET, "defaultMode": 0o440}},
        ],
    }


def _migration_job(options: ManifestOptions) -> dict[str, Any]:
    spec = _pod_spec(
        options, {"name": "db-upgrade", "command": ["sealgate"], "args": ["db", "upgrade"]}
    )
    spec["restartPolicy"] = "OnFailure"
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": _metadata(options, f"{APP_NAME}-db-upgrade"),
        "spec": {
            "backoffLimit": 6,
            # Deleted once done (its Pod template cannot be changed in place), so applying the
            # manifests of a new version creates it again and migrates again.
            "ttlSecondsAfterFinished": 600,
            "template": {"metadata": {"labels": _labels("db-upgrade")}, "spec": spec},
        },
    }


def _deployment(options: ManifestOptions) -> dict[str, Any]:
    probe = {"httpGet": {"path": "/healthz", "port": "https", "scheme": "HTTPS"}}
    container = {
        "name": APP_NAME,
        "command": ["sealgate"],
        "args": ["serve", "--tls-cert", f"{_TLS_DIR}/tls.crt", "--tls-key", f"{_TLS_DIR}/tls.key"],
        "ports": [{"name": "https", "containerPort": CONTAINER_PORT, "protocol": "TCP"}],
        "readinessProbe": {
            "httpGet": {"path": "/readyz", "port": "https", "scheme": "HTTPS"},
            "periodSeconds": 5,
            "failureThreshold": 3,
        },
        "livenessProbe": {**probe, "periodSeconds": 10, "failureThreshold": 3},
        "startupProbe": {**probe, "periodSeconds": 2, "failureThreshold": 30},
        "resources": {
            "requests": {"cpu": "250m", "memory": "256Mi"},
            # No CPU limit: throttling would spend the admission budget.
            "limits": {"memory": "512Mi"},
        },
        "volumeMounts": [{"name": "tls", "mountPath": _TLS_DIR, "readOnly": True}],
    }
    spec = _pod_spec(options, container)
    spec["volumes"].append({"name": "tls", "secret": {"secretName": TLS_SECRET}})
    spec["affinity"] = {
        "podAntiAffinity": {
            # Preferred, not required: a one-node cluster still runs every replica.
            "preferredDuringSchedulingIgnoredDuringExecution": [
                {
                    "weight": 100,
                    "podAffinityTerm": {
                        "labelSelector": {"matchLabels": _labels()},
                        "topologyKey": "kubernetes.io/hostname",
                    },
                }
            ]
        }
    }
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": _metadata(options, APP_NAME),
        "spec": {
            "replicas": options.replicas,
            "selector": {"matchLabels": _labels()},
            "strategy": {
                "type": "RollingUpdate",
                "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1},
            },
            "template": {"metadata": {"labels": _labels()}, "spec": spec},
        },
    }


def _disruption_budget(options: ManifestOptions) -> dict[str, Any]:
    return {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": _metadata(options, APP_NAME),
        # One Pod at a time, whatever the replica count (minAvailable would block drains of
        # a single replica forever).
        "spec": {"maxUnavailable": 1, "selector": {"matchLabels": _labels()}},
    }


def _service(options: ManifestOptions) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _metadata(options, APP_NAME),
        "spec": {
            "type": "ClusterIP",
            "selector": _labels(),
            "ports": [{"name": "https", "port": 443, "targetPort": "https", "protocol": "TCP"}],
        },
    }


def _webhook_configuration(options: ManifestOptions, *, mutating: bool) -> dict[str, Any]:
    client_config: dict[str, Any] = {
        "service": {
            "namespace": options.namespace,
            "name": APP_NAME,
            "path": MUTATE_PATH if mutating else VALIDATE_PATH,
            "port": 443,
        }
    }
    if options.ca_bundle is not None:
        client_config["caBundle"] = base64.b64encode(options.ca_bundle).decode("ascii")
    webhook: dict[str, Any] = {
        "name": f"{'mutate' if mutating else 'validate'}.images.sealgate.dev",
        "clientConfig": client_config,
        "rules": [
            {
                "apiGroups": [group],
                # Equivalent: other versions of these kinds come converted to v1.
                "apiVersions": ["v1"],
                "resources": list(resources),
                "operations": ["CREATE", "UPDATE"],
                "scope": "Namespaced",
            }
            for group, resources in WEBHOOK_RESOURCES
        ],
        "failurePolicy": "Fail" if options.failure_mode is FailureMode.closed else "Ignore",
        "matchPolicy": "Equivalent",
        "namespaceSelector": {
            "matchExpressions": [
                {
                    "key": "kubernetes.io/metadata.name",
                    "operator": "NotIn",
                    "values": sorted({"kube-system", options.namespace}),
                }
            ]
        },
        "sideEffects": "None",
        "timeoutSeconds": webhook_timeout(options.budget),
        "admissionReviewVersions": ["v1", "v1beta1"],
    }
    if mutating:
        # Another mutating webhook may change an image after the pin: pin again then.
        webhook["reinvocationPolicy"] = "IfNeeded"
    kind = "MutatingWebhookConfiguration" if mutating else "ValidatingWebhookConfiguration"
    return {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": kind,
        "metadata": _metadata(options, APP_NAME, namespaced=False),
        "webhooks": [webhook],
    }
