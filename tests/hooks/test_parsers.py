"""The webhook parsers over every third-party sample, and what they refuse or ignore."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from app.errors import HookError
from app.hooks.distribution import parse_distribution
from app.hooks.events import EventAction, EventSource
from app.hooks.harbor import parse_harbor
from app.hooks.own import is_referrer_manifest
from app.oci import media

Asset = Callable[[str], Path]


def _body(asset: Asset, name: str) -> bytes:
    return asset(name).read_bytes()


class TestDistributionSamples:
    def test_real_registry_push(self, asset: Asset) -> None:
        parsed = parse_distribution(
            _body(asset, "registry-distribution/distribution-event-sample.json")
        )
        (event,) = parsed.events
        assert event.source is EventSource.distribution
        assert event.action is EventAction.push
        assert event.event_id == "59660c41-1b88-454c-81c1-966aa7e31546"
        assert event.registry == "127.0.0.1:5000"  # request.host
        assert event.repository == "probe/hello"
        assert event.tag == "v1"
        assert event.digest == (
            "sha256:4db55eb01fb14a166508899f684caa4bfc436aaa51f8dec2ab928ff48ec4248e"
        )
        assert event.media_type == media.OCI_MANIFEST
        assert event.image == f"127.0.0.1:5000/probe/hello@{event.digest}"
        assert event.occurred_at is not None and event.occurred_at.year == 2026

    @pytest.mark.parametrize(
        "name",
        [
            "registry-distribution/envelope_push_manifest_and_2_layers_docs_v3.json",
            "registry-distribution/envelope_push_schema1_manifest_and_2_layers_docs_v2.json",
        ],
    )
    def test_manifest_push_kept_and_blob_pushes_ignored(self, asset: Asset, name: str) -> None:
        parsed = parse_distribution(_body(asset, name))
        (event,) = parsed.events
        assert event.event_id == "asdf-asdf-asdf-asdf-0"
        assert event.actor == "test-actor"
        assert event.registry == "registrycluster.local"
        assert event.repository == "library/test"
        assert event.tag is None  # pushed by digest
        assert [i.reason for i in parsed.ignored] == ["blob", "blob"]
        assert parsed.unreadable == ()

    def test_pull_is_ignored(self, asset: Asset) -> None:
        parsed = parse_distribution(
            _body(asset, "registry-distribution/envelope_pull_manifest_docs_v3.json")
        )
        assert parsed.events == ()
        assert [i.reason for i in parsed.ignored] == ["pull"]


def _envelope(*events: object) -> bytes:
    return json.dumps({"events": list(events)}).encode()


def _push(**target: object) -> dict[str, object]:
    base: dict[str, object] = {
        "mediaType": media.OCI_MANIFEST,
        "digest": "sha256:" + "a" * 64,
        "repository": "team/app",
        "url": "http://127.0.0.1:5000/v2/team/app/manifests/sha256:" + "a" * 64,
    }
    base.update(target)
    return {"id": "e1", "action": "push", "target": base, "request": {"host": "127.0.0.1:5000"}}


class TestDistributionRules:
    @pytest.mark.parametrize(
        ("target", "reason"),
        [
            ({"tag": "sha256-" + "b" * 64 + ".sig"}, "signature or referrer tag"),
            ({"tag": "sha256-" + "b" * 64 + ".att"}, "signature or referrer tag"),
            ({"tag": "sha256-" + "b" * 64}, "signature or referrer tag"),
            (
                {"references": [{"mediaType": media.COSIGN_SIMPLESIGNING}]},
                "signature, attestation or scan referrer",
            ),
            (
                {"references": [{"mediaType": media.SIGSTORE_BUNDLE_V03}]},
                "signature, attestation or scan referrer",
            ),
            (
                {"artifactType": media.SIGSTORE_BUNDLE_V03},
                "signature, attestation or scan referrer",
            ),
        ],
    )
    def test_own_signature_pushes_are_ignored(self, target: dict[str, object], reason: str) -> None:
        parsed = parse_distribution(_envelope(_push(**target)))
        assert parsed.events == ()
        assert [i.reason for i in parsed.ignored] == [reason]

    def test_an_image_tag_is_kept(self) -> None:
        (event,) = parse_distribution(_envelope(_push(tag="1.4"))).events
        assert event.tag == "1.4"

    def test_host_falls_back_to_the_target_url(self) -> None:
        event = _push()
        del event["request"]
        (parsed,) = parse_distribution(_envelope(event)).events
        assert parsed.registry == "127.0.0.1:5000"

    def test_manifest_delete_and_tag_delete(self) -> None:
        deleted = {
            "id": "d1",
            "action": "delete",
            "target": {"repository": "team/app", "digest": "sha256:" + "c" * 64},
            "request": {"host": "reg.example"},
        }
        untagged = {
            "id": "d2",
            "action": "delete",
            "target": {"repository": "team/app", "tag": "1.0"},
            "request": {"host": "reg.example"},
        }
        parsed = parse_distribution(_envelope(deleted, untagged))
        (event,) = parsed.events
        assert event.action is EventAction.delete
        assert [i.reason for i in parsed.ignored] == ["tag deleted; the manifest remains"]

    def test_unreadable_event_does_not_fail_the_others(self) -> None:
        parsed = parse_distribution(
            _envelope("nonsense", {"id": "x"}, _push(repository="UPPER/Case!"), _push())
        )
        assert len(parsed.events) == 1
        assert len(parsed.unreadable) == 3
        assert all(u.reason.startswith("unreadable") for u in parsed.unreadable)

    @pytest.mark.parametrize(
        ("body", "words"),
        [
            (b"not json", "not JSON"),
            (b"\xff\xfe", "UTF-8"),
            (b"[]", 'expected {"events"'),
            (b'{"events": {}}', 'expected {"events"'),
            (b"[" * 100_000, "nested too deeply"),
            (json.dumps({"events": [{}] * 1001}).encode(), "at most 1000"),
        ],
    )
    def test_malformed_envelopes_are_refused_with_the_reason(self, body: bytes, words: str) -> None:
        with pytest.raises(HookError) as caught:
            parse_distribution(body)
        assert words in caught.value.message
        assert caught.value.http_status == 400


class TestHarborSamples:
    def test_push_default_format(self, asset: Asset) -> None:
        (event,) = parse_harbor(_body(asset, "registry-harbor/zulip_PUSH_ARTIFACT.json")).events
        assert event.source is EventSource.harbor
        assert event.action is EventAction.push
        assert event.registry == "harbor.example.com"
        assert event.repository == "example/test"
        assert event.tag == "latest"
        assert event.actor == "admin"
        assert event.event_id.startswith("sha256:")  # Default format has no id: derived

    def test_the_derived_id_is_stable_for_a_retry(self, asset: Asset) -> None:
        body = _body(asset, "registry-harbor/zulip_PUSH_ARTIFACT.json")
        again = json.dumps(json.loads(body), indent=1).encode()  # same content, other bytes
        assert parse_harbor(body).events[0].event_id == parse_harbor(again).events[0].event_id

    def test_delete(self, asset: Asset) -> None:
        (event,) = parse_harbor(_body(asset, "registry-harbor/zulip_DELETE_ARTIFACT.json")).events
        assert event.action is EventAction.delete

    def test_scan_completed_with_nested_repository(self, asset: Asset) -> None:
        name = "registry-harbor/zulip_SCANNING_COMPLETED_high_vulns_nested_repo.json"
        (event,) = parse_harbor(_body(asset, name)).events
        assert event.action is EventAction.scan_completed
        assert event.repository == "test/alpine/helm"
        assert event.scan is not None
        assert event.scan.counts == {"high": 4, "unknown": 1}
        assert (event.scan.total, event.scan.fixable) == (5, 5)
        assert event.scan.scanner == "Trivy"

    def test_scan_completed_clean(self, asset: Asset) -> None:
        name = "registry-harbor/zulip_SCANNING_COMPLETED_no_vulnerability.json"
        (event,) = parse_harbor(_body(asset, name)).events
        assert event.scan is not None and event.scan.counts == {} and event.scan.total == 0

    def test_scan_completed_cloudevent(self, asset: Asset) -> None:
        name = "registry-harbor/harbor_docs_SCANNING_COMPLETED_cloudevents.json"
        (event,) = parse_harbor(_body(asset, name)).events
        assert event.action is EventAction.scan_completed
        assert event.event_id == f"64bce2fe-6159-454d-8389-852d01ef1e9d/{event.digest}"
        assert event.registry == "localhost"
        assert event.repository == "harbor/alpine"

    def test_scan_stopped_and_failed_are_recorded(self, asset: Asset) -> None:
        stopped = parse_harbor(
            _body(asset, "registry-harbor/harbor_docs_SCANNING_STOPPED_default.json")
        )
        failed = parse_harbor(
            _body(asset, "registry-harbor/zulip_SCANNING_FAILED_legacy_no_scan_overview.json")
        )
        assert stopped.events[0].action is EventAction.scan_stopped
        assert stopped.events[0].scan is not None and stopped.events[0].scan.status == "Stopped"
        assert failed.events[0].action is EventAction.scan_failed
        assert failed.events[0].scan is None

    def test_other_types_are_ignored(self, asset: Asset) -> None:
        parsed = parse_harbor(_body(asset, "registry-harbor/zulip_REPLICATION.json"))
        assert parsed.events == ()
        assert [i.reason for i in parsed.ignored] == ["type REPLICATION is not used"]

    def test_resource_url_must_agree_with_the_repository(self) -> None:
        body = {
            "type": "PUSH_ARTIFACT",
            "occur_at": 1,
            "event_data": {
                "resources": [{"digest": "sha256:" + "d" * 64, "resource_url": "h.example/a/b:1"}],
                "repository": {"repo_full_name": "other/repo"},
            },
        }
        parsed = parse_harbor(json.dumps(body).encode())
        assert parsed.events == () and len(parsed.unreadable) == 1

    @pytest.mark.parametrize(
        "body",
        [b"[]", b'{"type": "PUSH_ARTIFACT"}', b'{"specversion": "1.0", "type": "x"}', b"{"],
    )
    def test_malformed_payloads_are_refused(self, body: bytes) -> None:
        with pytest.raises(HookError):
            parse_harbor(body)


class TestReferrerManifests:
    def test_recognised_by_subject_or_media_types(self) -> None:
        assert is_referrer_manifest({"subject": {"digest": "sha256:" + "e" * 64}})
        assert is_referrer_manifest({"artifactType": media.SIGSTORE_BUNDLE_V03})
        assert is_referrer_manifest({"layers": [{"mediaType": media.COSIGN_SIMPLESIGNING}]})
        assert not is_referrer_manifest(
            {
                "config": {"mediaType": media.OCI_IMAGE_CONFIG},
                "layers": [{"mediaType": media.OCI_LAYER_GZIP}],
            }
        )
