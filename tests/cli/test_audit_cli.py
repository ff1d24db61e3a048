"""``sealgate audit verify|export|show|purge`` in process against the suite's database."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

from sqlalchemy import text

from app.audit.chain import append_audit
from app.audit.inputs import store_input_value
from app.db.session import session_scope
from app.services import Services
from tests.audit.samples import decision
from tests.conftest import Cli

NOW = dt.datetime.now(dt.UTC)


def _trail(services: Services, count: int = 5, *, days_ago: int = 1) -> list[int]:
    with session_scope(services.sessions) as session:
        name = store_input_value(session, {"request": {"uid": "uid-0"}})
        entries = [decision(n, time=NOW - dt.timedelta(days=days_ago)) for n in range(count)]
        entries[0] = entries[0].model_copy(update={"input_hash": name})
        return append_audit(session, entries)


class TestVerify:
    def test_a_good_chain_exits_0_with_a_count(self, sealgate: Cli, services: Services) -> None:
        seqs = _trail(services)
        result = sealgate("audit", "verify")
        assert result.exit_code == 0, result.output
        assert f"audit chain intact: 5 records (seq {seqs[0]} to {seqs[-1]})" in result.stdout
        assert "verifying audit chain: 5/5" in result.stderr  # plain progress lines off a tty

    def test_an_edited_row_exits_1_naming_it(self, sealgate: Cli, services: Services) -> None:
        seqs = _trail(services)
        with session_scope(services.sessions) as session:
            session.execute(
                text("UPDATE audit_records SET actor = 'someone else' WHERE seq = :s"),
                {"s": seqs[2]},
            )
        result = sealgate("audit", "verify")
        assert result.exit_code == 1
        assert f"record {seqs[2]} was changed" in result.stderr
        assert "[audit.changed]" in result.stderr

    def test_since_checks_only_the_recent_part(self, sealgate: Cli, services: Services) -> None:
        old = _trail(services, 3, days_ago=30)
        _trail(services, 2, days_ago=1)
        with session_scope(services.sessions) as session:
            session.execute(
                text("UPDATE audit_records SET actor = 'x' WHERE seq = :s"), {"s": old[0]}
            )
        assert sealgate("audit", "verify").exit_code == 1
        recent = sealgate("audit", "verify", "--since", "7d")
        assert recent.exit_code == 0, recent.output
        assert "3 records" in recent.stdout  # the two recent ones and the one before them
        assert sealgate("audit", "verify", "--since", "yesterday-ish").exit_code == 1


class TestExportAndShow:
    def test_export_writes_json_lines(
        self, sealgate: Cli, services: Services, tmp_path: Path
    ) -> None:
        seqs = _trail(services, 4)
        _trail(services, 2, days_ago=30)
        out = tmp_path / "audit.jsonl"
        result = sealgate("audit", "export", "--since", "7d", "-o", str(out))
        assert result.exit_code == 0, result.output
        lines = [json.loads(line) for line in out.read_text().splitlines()]
        assert [r["seq"] for r in lines] == seqs
        assert {"hash", "prev_hash", "kind", "actor", "input_hash"} <= set(lines[0])
        assert "exporting audit records: 4/4" in result.stderr
        assert "exported 4 audit record(s)" in result.stderr

    def test_export_to_stdout(self, sealgate: Cli, services: Services) -> None:
        _trail(services, 2)
        result = sealgate("audit", "export")
        assert [json.loads(line)["kind"] for line in result.stdout.splitlines()] == [
            "admission.decision",
            "admission.decision",
        ]

    def test_show_prints_the_record_and_its_input(self, sealgate: Cli, services: Services) -> None:
        seqs = _trail(services)
        result = sealgate("audit", "show", str(seqs[0]))
        assert result.exit_code == 0, result.output
        body = json.loads(result.stdout)
        assert body["record"]["seq"] == seqs[0]
        assert body["input"] == {"request": {"uid": "uid-0"}}
        missing = sealgate("audit", "show", "999999")
        assert missing.exit_code == 1 and "no audit record 999999" in missing.stderr


class TestPurge:
    def test_purge_keeps_the_chain_verifiable(self, sealgate: Cli, services: Services) -> None:
        _trail(services, 3, days_ago=400)
        _trail(services, 2, days_ago=1)
        result = sealgate("audit", "purge")
        assert result.exit_code == 0, result.output
        assert json.loads(result.stdout)["purged"] == 3
        verified = sealgate("audit", "verify")
        assert verified.exit_code == 0, verified.output
        assert "3 records" in verified.stdout and "2 checkpoint(s)" in verified.stdout

    def test_purge_without_the_kek_refuses(self, sealgate: Cli, services: Services) -> None:
        _trail(services, 1, days_ago=400)
        del sealgate.env["SEALGATE_KEY_ENCRYPTION_KEY"]
        result = sealgate("audit", "purge")
        assert result.exit_code == 1 and "[config.no_kek]" in result.stderr
