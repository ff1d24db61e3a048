"""Signed-identity rules: which repository a signature must name for an authority to take it."""

from __future__ import annotations

import pytest

from app.errors import InputError, VerificationError
from app.verify.identity import (
    ANY_IDENTITY,
    MATCH_REPOSITORY,
    IdentityMode,
    IdentityRemap,
    SignedIdentityRule,
)

REPO = "registry.example/team/app"


class TestMatchRepository:
    @pytest.mark.parametrize(
        "signed",
        [REPO, f"{REPO}:v1", f"{REPO}@sha256:{'ab' * 32}", f"{REPO}:v1@sha256:{'ab' * 32}"],
    )
    def test_the_same_repository_matches_whatever_the_tag_or_digest(self, signed: str) -> None:
        MATCH_REPOSITORY.check([signed], repository=REPO, authority="a")

    def test_docker_hub_names_are_normalised(self) -> None:
        for signed in ("index.docker.io/library/busybox", "busybox", "docker.io/library/busybox"):
            MATCH_REPOSITORY.check([signed], repository="docker.io/library/busybox", authority="a")

    @pytest.mark.parametrize(
        "signed",
        ["registry.example/other/app", "registry.example/team/app2", "other.example/team/app"],
    )
    def test_another_repository_is_refused_naming_both(self, signed: str) -> None:
        with pytest.raises(VerificationError) as e:
            MATCH_REPOSITORY.check([signed], repository=REPO, authority="release")
        assert e.value.code == "verify.identity_mismatch"
        assert signed in e.value.message and REPO in e.value.message
        assert "'release'" in e.value.message

    def test_one_matching_subject_name_is_enough(self) -> None:
        MATCH_REPOSITORY.check(["registry.example/other/app", REPO], repository=REPO, authority="a")

    def test_a_payload_naming_no_repository_is_refused(self) -> None:
        with pytest.raises(VerificationError) as e:
            MATCH_REPOSITORY.check([], repository=REPO, authority="a")
        assert e.value.code == "verify.identity_missing"
        assert "'any'" in e.value.message

    @pytest.mark.parametrize("signed", ["not a reference", "UPPER/case", "", "x" * 300])
    def test_a_name_that_is_no_reference_matches_nothing(self, signed: str) -> None:
        with pytest.raises(VerificationError) as e:
            MATCH_REPOSITORY.check([signed], repository=REPO, authority="a")
        assert e.value.code == "verify.identity_mismatch"


class TestAny:
    def test_any_accepts_every_name_and_none(self) -> None:
        ANY_IDENTITY.check(["elsewhere.example/x"], repository=REPO, authority="a")
        ANY_IDENTITY.check([], repository=REPO, authority="a")


class TestRemap:
    def test_a_mirror_accepts_the_source_name_and_its_own(self) -> None:
        rule = SignedIdentityRule.parse(None, ["mirror.local/team=registry.example/team"])
        assert rule.mode is IdentityMode.remap
        for signed in ("registry.example/team/app", "mirror.local/team/app"):
            rule.check([signed], repository="mirror.local/team/app", authority="m")
        with pytest.raises(VerificationError):
            rule.check(
                ["registry.example/team/api"], repository="mirror.local/team/app", authority="m"
            )

    def test_prefixes_match_whole_path_components(self) -> None:
        rule = SignedIdentityRule.parse("remap", ["mirror.local/team=registry.example/team"])
        with pytest.raises(VerificationError):
            rule.check(
                ["registry.example/teamx/app"], repository="mirror.local/teamx/app", authority="m"
            )

    def test_the_longest_prefix_wins(self) -> None:
        rule = SignedIdentityRule.parse(
            "remap", ["mirror.local=registry.example", "mirror.local/ops=ops.example/prod"]
        )
        assert rule.accepted_names("mirror.local/ops/app") == (
            "mirror.local/ops/app",
            "ops.example/prod/app",
        )
        assert rule.accepted_names("mirror.local/team/app")[1] == "registry.example/team/app"

    def test_stored_form_round_trips(self) -> None:
        rule = SignedIdentityRule.parse(None, ["index.docker.io/acme=ghcr.io/acme"])
        assert rule.remaps == (
            IdentityRemap(prefix="docker.io/acme", signed_prefix="ghcr.io/acme"),
        )
        assert SignedIdentityRule.from_stored(rule.stored()) == rule
        assert SignedIdentityRule.from_stored(MATCH_REPOSITORY.stored()) == MATCH_REPOSITORY


class TestParse:
    def test_default_is_match_repository(self) -> None:
        assert SignedIdentityRule.parse(None) == MATCH_REPOSITORY

    @pytest.mark.parametrize(
        ("mode", "remaps", "words"),
        [
            ("exact", [], "not known"),
            ("remap", [], "needs at least one"),
            ("any", ["a.io/x=b.io/x"], "go with signed identity 'remap'"),
            (None, ["a.io/x"], "PREFIX=SIGNED_PREFIX"),
            (None, ["a.io/*=b.io/x"], "no globs"),
            (None, ["a.io/x:v1=b.io/x"], "no tag"),
            (None, ["=b.io/x"], "registry/repository prefix"),
        ],
    )
    def test_refusals_name_the_problem(
        self, mode: str | None, remaps: list[str], words: str
    ) -> None:
        with pytest.raises(InputError) as e:
            SignedIdentityRule.parse(mode, remaps)
        assert e.value.code == "input.signed_identity"
        assert words in e.value.message
