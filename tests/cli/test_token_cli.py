"""``sealgate token`` against the suite's database."""

from __future__ import annotations

import json
import re

from tests.conftest import Cli

ISO_UTC = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$")


class TestTokenCli:
    def test_create_list_revoke(self, sealgate: Cli) -> None:
        created = sealgate("token", "create", "ci", "--scope", "sign:ghcr.io/acme/*")
        assert created.exit_code == 0, created.output
        body = json.loads(created.stdout)
        assert body["token"].startswith("sgt_")
        listed = sealgate("token", "list")
        assert listed.exit_code == 0
        assert body["token"] not in listed.stdout
        assert json.loads(listed.stdout)[0]["scopes"] == ["sign:ghcr.io/acme/*"]
        assert sealgate("token", "revoke", "ci").exit_code == 0
        assert json.loads(sealgate("token", "list").stdout)[0]["revoked"] is True

    def test_times_are_iso_8601_with_z(self, sealgate: Cli) -> None:
        created = sealgate("token", "create", "ci", "--scope", "admin", "--expires-in-days", "30")
        assert created.exit_code == 0, created.output
        assert ISO_UTC.match(json.loads(created.stdout)["expires_at"])
        (listed,) = json.loads(sealgate("token", "list").stdout)
        assert ISO_UTC.match(listed["created_at"]), listed
        assert ISO_UTC.match(listed["expires_at"]), listed

    def test_bad_scope_is_one_line_and_exit_1(self, sealgate: Cli) -> None:
        result = sealgate("token", "create", "ci", "--scope", "delete:**")
        assert result.exit_code == 1
        assert result.stderr.startswith("error: scope 'delete:**' names unknown action")
        assert "Traceback" not in result.output

    def test_revoking_unknown_token(self, sealgate: Cli) -> None:
        result = sealgate("token", "revoke", "nobody")
        assert result.exit_code == 1
        assert "no token named 'nobody'" in result.stderr
