"""Payload formats: cosign simple-signing, the cosign v3 statement, DSSE PAE."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from app.errors import EvidenceError, InputError
from app.signing.payloads import (
    COSIGN_SIGN_PREDICATE,
    cosign_statement,
    dsse_pae,
    parse_simple_signing,
    parse_statement,
    simple_signing_payload,
)

DIGEST = "sha256:" + "ab" * 32


class TestSimpleSigning:
    def test_wire_shape(self) -> None:
        doc = json.loads(
            simple_signing_payload(docker_reference="r.io/a/b", digest=DIGEST, annotations=None)
        )
        assert doc == {
            "critical": {
                "identity": {"docker-reference": "r.io/a/b"},
                "image": {"docker-manifest-digest": DIGEST},
                "type": "cosign container image signature",
            },
            "optional": None,
        }

    def test_annotations_go_to_optional_and_round_trip(self) -> None:
        data = simple_signing_payload(
            docker_reference="r.io/a/b", digest=DIGEST, annotations={"env": "prod"}
        )
        parsed = parse_simple_signing(data)
        assert parsed.digest == DIGEST
        assert parsed.optional == {"env": "prod"}

    def test_reads_old_capitalised_key(self) -> None:
        # cosign before v1.x wrote "Docker-manifest-digest".
        data = json.dumps(
            {
                "critical": {
                    "identity": {"docker-reference": "r.io/a/b"},
                    "image": {"Docker-manifest-digest": DIGEST},
                    "type": "cosign container image signature",
                },
                "optional": None,
            }
        ).encode()
        assert parse_simple_signing(data).digest == DIGEST

    def test_real_cosign_payload(self) -> None:
        # Shape as printed by `cosign verify` (third-party README, see PROVENANCE of the bundle
        # tests): keys in cosign's own order and spacing.
        data = (
            b'{"critical":{"identity":{"docker-reference":"ghcr.io/x/y"},"image":'
            b'{"docker-manifest-digest":"' + DIGEST.encode() + b'"},"type":'
            b'"cosign container image signature"},"optional":{"Bundle":null}}'
        )
        assert parse_simple_signing(data).docker_reference == "ghcr.io/x/y"

    @pytest.mark.parametrize(
        "data",
        [
            b"",
            b"[]",
            b"{}",
            b'{"critical":{}}',
            b'{"critical":{"identity":{},"image":{"docker-manifest-digest":"sha256:zz"},"type":"x"}}',
            b"\xff\xfe",
            b" " * (2 * 1024 * 1024),
        ],
    )
    def test_malformed_is_evidence_error(self, data: bytes) -> None:
        with pytest.raises(EvidenceError):
            parse_simple_signing(data)

    def test_bad_digest_refused_when_writing(self) -> None:
        with pytest.raises(InputError):
            simple_signing_payload(docker_reference="r", digest="sha256:xyz", annotations=None)


class TestStatement:
    def test_cosign_v3_shape(self) -> None:
        doc = json.loads(
            cosign_statement(digest=DIGEST, repository="r.io/a/b", annotations={"k": "v"})
        )
        assert doc == {
            "_type": "https://in-toto.io/Statement/v1",
            "subject": [
                {"name": "r.io/a/b", "digest": {"sha256": "ab" * 32}, "annotations": {"k": "v"}}
            ],
            "predicateType": COSIGN_SIGN_PREDICATE,
            "predicate": {},
        }

    def test_round_trip_and_binding(self) -> None:
        parsed = parse_statement(cosign_statement(digest=DIGEST, repository="r.io/a/b"))
        assert parsed.predicate_type == COSIGN_SIGN_PREDICATE
        assert parsed.names_digest(DIGEST)
        assert not parsed.names_digest("sha256:" + "cd" * 32)

    def test_third_party_statement(self, asset: Callable[[str], Path]) -> None:
        parsed = parse_statement(asset("sigstore/sigstore-js/statement.json").read_bytes())
        assert parsed.type == "https://in-toto.io/Statement/v0.1"
        assert parsed.subjects[0].digest.get("sha512")

    @pytest.mark.parametrize(
        "doc",
        [
            {},
            {"_type": "x", "subject": [{"digest": {"sha256": "a"}}], "predicateType": "p"},
            {"_type": "https://in-toto.io/Statement/v1", "subject": [], "predicateType": "p"},
            {"_type": "https://in-toto.io/Statement/v1", "subject": [{"digest": {"a": 1}}]},
            {"_type": "https://in-toto.io/Statement/v1", "subject": [{"digest": {"a": "b"}}]},
        ],
    )
    def test_malformed_is_evidence_error(self, doc: object) -> None:
        with pytest.raises(EvidenceError):
            parse_statement(json.dumps(doc).encode())


def test_dsse_pae_matches_the_spec_example() -> None:
    # DSSE protocol.md test vector: PAE("http://example.com/HelloWorld", "hello world").
    assert dsse_pae("http://example.com/HelloWorld", b"hello world") == (
        b"DSSEv1 29 http://example.com/HelloWorld 11 hello world"
    )
