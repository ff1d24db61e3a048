"""Every command's ``--help`` at 80 columns: names in full, every option described, defaults."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, get_args

import pytest
import typer
from typer.testing import CliRunner

from app.cli import key as key_cli
from app.cli import policy as policy_cli
from app.cli import scan as scan_cli
from app.cli.main import cli
from app.policy.input import Entrypoint
from app.scans.detect import AUTO
from app.scans.model import ReportFormat
from app.signing.signers import GENERATABLE


def _commands(command: Any, path: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], Any]]:
    """Every command under ``command`` (Typer's own click classes: duck-typed)."""
    yield path, command
    for name, sub in sorted(getattr(command, "commands", {}).items()):
        yield from _commands(sub, (*path, name))


COMMANDS = list(_commands(typer.main.get_command(cli)))


def _help(*path: str) -> str:
    result = CliRunner().invoke(cli, [*path, "--help"], env={"COLUMNS": "80"})
    assert result.exit_code == 0, result.output
    return result.output


def _flat(text: str) -> str:
    return " ".join(text.split())


@pytest.mark.parametrize(
    ("path", "command"), COMMANDS, ids=[" ".join(p) or "sealgate" for p, _ in COMMANDS]
)
def test_help_fits_80_columns_with_every_option_named_and_described(
    path: tuple[str, ...], command: Any
) -> None:
    text = _help(*path)
    assert "…" not in text
    assert "<bool>" not in text
    too_wide = [line for line in text.splitlines() if len(line) > 80]
    assert not too_wide, too_wide
    for param in command.params:
        if param.param_type_name != "option" or param.hidden:
            continue
        for name in (*param.opts, *param.secondary_opts):
            assert name in text, f"{name} is not shown in full"
        assert (param.help or "").strip(), f"{' '.join(path)} {param.opts[0]} has no description"


def test_the_command_tree_is_complete() -> None:
    names = {" ".join(p) for p, _ in COMMANDS}
    assert {"version", "sign", "verify", "db upgrade", "policy test", "key generate"} <= names


def test_defaults_are_shown() -> None:
    assert "[default: admission]" in _flat(_help("policy", "decide"))
    assert "[default: admission]" in _flat(_help("policy", "input"))
    assert "[default: ecdsa-p256]" in _flat(_help("key", "generate"))
    assert "[default: auto]" in _flat(_help("scan", "ingest"))


def test_shell_completion_is_offered() -> None:
    text = _help()
    assert "--install-completion" in text and "--show-completion" in text


def test_shell_completion_completes_commands() -> None:
    # What bash's completion function asks: the words so far and which one to complete.
    env = {"_SEALGATE_COMPLETE": "complete_bash", "COMP_WORDS": "sealgate policy te"}
    result = CliRunner().invoke(cli, [], env={**env, "COMP_CWORD": "2"}, prog_name="sealgate")
    assert result.exit_code == 0
    assert result.output.split() == ["test"]


class TestChoicesWrittenOut:
    """The CLI writes some domain values out so that ``--help`` loads no domain module."""

    def test_entrypoints(self) -> None:
        assert get_args(policy_cli.EntrypointName) == tuple(e.value for e in Entrypoint)

    def test_key_algorithms(self) -> None:
        assert tuple(a.value for a in GENERATABLE) == key_cli.ALGORITHMS

    def test_scan_formats(self) -> None:
        assert tuple(f.value for f in ReportFormat) == scan_cli.FORMATS
        assert scan_cli.AUTO == AUTO
