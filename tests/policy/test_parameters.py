"""Parameter checks that keep a typo in data.json from failing every decision."""

from __future__ import annotations

from typing import Any

import pytest

from app.errors import PolicyError
from app.policy.bundle import PolicyBundle
from app.policy.parameters import check_parameters, parameter_problems
from app.policy.versions import check_bundle


def allowlist(*entries: Any) -> dict[str, Any]:
    return {"defaults": {"vulnerabilities": {"allowlist": list(entries)}}}


class TestParameters:
    def test_default_data_is_usable(self, default_bundle: PolicyBundle) -> None:
        assert list(parameter_problems(default_bundle.data)) == []

    @pytest.mark.parametrize(
        ("data", "where"),
        [
            (allowlist({"id": "CVE-1", "reason": "r", "expires": "2026-02-30"}), "expires"),
            (allowlist({"id": "CVE-1", "reason": "r", "expires": "soon"}), "expires"),
            (allowlist({"id": "CVE-1", "expires": "2026-01-01"}), "reason"),
            (allowlist("CVE-1"), "allowlist[0]"),
            ({"namespaces": {"dev": {"mode": "off"}}}, "namespaces['dev'].mode"),
            ({"exemptions": [{"name": "all", "reason": "r"}]}, "exemptions[0]"),
            ({"exemptions": [{"images": ["x/*"]}]}, "exemptions[0].name"),
        ],
    )
    def test_unusable_parameters_are_named(self, data: dict[str, Any], where: str) -> None:
        with pytest.raises(PolicyError) as caught:
            check_parameters(data)
        assert caught.value.code == "policy.data"
        assert where in caught.value.message

    def test_valid_entries_pass(self) -> None:
        check_parameters(
            allowlist(
                {"id": "CVE-1", "reason": "r", "expires": "2026-12-31"},
                {"id": "CVE-2", "reason": "r", "expires": "2026-12-31T10:00:00+02:00"},
            )
        )

    def test_publishing_refuses_unusable_parameters(self, default_bundle: PolicyBundle) -> None:
        bad = PolicyBundle(
            modules=default_bundle.modules,
            data=allowlist({"id": "CVE-1", "reason": "r", "expires": "2026-02-30"}),
        )
        with pytest.raises(PolicyError, match="2026-02-30"):
            check_bundle(bad)
