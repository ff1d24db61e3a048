"""``sealgate errors``: the catalogue on a terminal, and docs/errors.md as Markdown."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from app.cli.main import cli
from app.error_codes import CODES

DOC = Path(__file__).resolve().parents[2] / "docs" / "errors.md"


def _run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, ["errors", *args])
    return result.exit_code, result.stdout, result.stderr


class TestErrorsCommand:
    def test_lists_every_code_with_its_status(self) -> None:
        code, out, _ = _run()
        assert code == 0
        lines = out.splitlines()
        assert len(lines) == len(CODES)
        timeout = next(line for line in lines if line.startswith("registry.timeout "))
        assert timeout.split()[1] == "504"
        assert CODES["registry.timeout"].meaning in timeout

    def test_markdown_is_docs_errors_md(self) -> None:
        code, out, _ = _run("--markdown")
        assert code == 0 and out == DOC.read_text()

    def test_narrows_to_a_domain_or_a_code(self) -> None:
        for domain in ("deadline", "not_found"):
            _, out, _ = _run(domain)
            shown = {line.split()[0] for line in out.splitlines()}
            assert shown == {e.code for e in CODES.values() if e.domain == domain}
        assert "not_found" in shown  # a bare domain code is of its domain
        _, out, _ = _run("store.not_migrated")
        assert out.split()[:2] == ["store.not_migrated", "503"]

    def test_an_unknown_code_is_refused(self) -> None:
        code, _, err = _run("registry.nope")
        assert code == 1
        assert "no error code or domain is named 'registry.nope'" in err
