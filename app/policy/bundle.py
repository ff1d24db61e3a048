"""Policy bundles: a set of Rego modules plus the data they are parameterised by.

A bundle is a map of relative file paths to text: ``*.rego`` modules and an optional
``data.json`` holding ``data.parameters``. It is read from a directory (``policies/``)
or from the files map of a stored ``PolicyVersion``; a data file named in
``SEALGATE_POLICY_DATA`` is merged over its data (deeply; lists are replaced). Its
content hash names it in versions, caches and decisions.

Compiling a bundle (``compile_problems``) uses the embedded engine and turns OPA's
error text into ``CompileProblem`` items with file, line and column.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from pathlib import Path, PurePosixPath
from typing import Any

from pydantic import BaseModel, ConfigDict

from app.errors import InputError, PolicyError
from app.limits import MAX_POLICY_BUNDLE_BYTES, MAX_POLICY_BUNDLE_FILES

DATA_FILE = "data.json"
DATA_ROOT = "parameters"


class CompileProblem(BaseModel):
    """One compile error, located in the bundle."""

    model_config = ConfigDict(frozen=True)

    file: str
    line: int
    column: int
    message: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.column}: {self.message}"


class PolicyBundle(BaseModel):
    """Rego modules by relative path and the parameters document they read."""

    model_config = ConfigDict(frozen=True)

    modules: dict[str, str]
    data: dict[str, Any]

    @classmethod
    def from_files(cls, files: Mapping[str, Any]) -> PolicyBundle:
        """Build a bundle from a files map (path -> text); InputError on anything unsafe.

        Only ``*.rego`` files and one top-level ``data.json`` are accepted; paths must be
        relative and stay inside the bundle.
        """
        if not files:
            raise InputError("the policy bundle is empty: give at least one .rego file")
        if len(files) > MAX_POLICY_BUNDLE_FILES:
            raise InputError(f"the policy bundle has more than {MAX_POLICY_BUNDLE_FILES} files")
        total = 0
        modules: dict[str, str] = {}
        data: dict[str, Any] = {}
        for path, text in files.items():
            if not isinstance(text, str):
                raise InputError(f"bundle file {path!r} must be text")
            total += len(text.encode())
            name = _safe_path(path)
            if name == DATA_FILE:
                data = _parse_data(text, origin=name)
            elif name.endswith(".rego"):
                modules[name] = text
            else:
                raise InputError(f"bundle file {path!r} is neither a .rego module nor {DATA_FILE}")
        if total > MAX_POLICY_BUNDLE_BYTES:
            raise InputError(f"the policy bundle is larger than {MAX_POLICY_BUNDLE_BYTES} bytes")
        if not modules:
            raise InputError("the policy bundle has no .rego module")
        return cls(modules=dict(sorted(modules.items())), data=data)

    @classmethod
    def from_directory(cls, directory: Path) -> PolicyBundle:
        """Read every ``*.rego`` under ``directory`` and its top-level ``data.json``."""
        if not directory.is_dir():
            raise InputError(f"policy directory {directory} does not exist")
        files: dict[str, str] = {}
        for path in sorted(directory.rglob("*.rego")):
            files[path.relative_to(directory).as_posix()] = path.read_text()
        data_path = directory / DATA_FILE
        if data_path.is_file():
            files[DATA_FILE] = data_path.read_text()
        if not any(name.endswith(".rego") for name in files):
            raise InputError(f"policy directory {directory} has no .rego file")
        return cls.from_files(files)

    def with_data_overrides(self, override_file: Path | None) -> PolicyBundle:
        """This bundle with the JSON object in ``override_file`` merged over its data."""
        if override_file is None:
            return self
        try:
            text = override_file.read_text()
        except OSError as e:
            raise PolicyError(
                f"SEALGATE_POLICY_DATA {override_file}: {e.strerror}", code="policy.data"
            ) from e
        override = _parse_data(text, origin=str(override_file))
        return PolicyBundle(modules=self.modules, data=deep_merge(self.data, override=override))

    def files(self) -> dict[str, str]:
        """The files map this bundle was made from (data re-serialised canonically)."""
        files = dict(self.modules)
        if self.data:
            files[DATA_FILE] = json.dumps(self.data, indent=2, sort_keys=True)
        return files

    @property
    def content_hash(self) -> str:
        """sha256 over the modules and the canonical data, stable across file order."""
        digest = hashlib.sha256()
        for name, text in sorted(self.modules.items()):
            digest.update(name.encode() + b"\0" + text.encode() + b"\0")
        digest.update(json.dumps(self.data, sort_keys=True, separators=(",", ":")).encode())
        return digest.hexdigest()


def deep_merge(base: Mapping[str, Any], *, override: Mapping[str, Any]) -> dict[str, Any]:
    """``override`` merged over ``base``: objects merge key by key, anything else replaces."""
    merged = dict(base)
    for key, value in override.items():
        current = merged.get(key)
        if isinstance(current, Mapping) and isinstance(value, Mapping):
            merged[key] = deep_merge(current, override=value)
        else:
            merged[key] = value
    return merged


def _safe_path(path: str) -> str:
    pure = PurePosixPath(path)
    if not path or pure.is_absolute() or ".." in pure.parts or "\\" in path or "\0" in path:
        raise InputError(f"bundle file path {path!r} must be relative and inside the bundle")
    return pure.as_posix()


def _parse_data(text: str, *, origin: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as e:
        raise InputError(
            f"{origin}:{e.lineno}:{e.colno}: not valid JSON: {e.msg}",
            details={"file": origin, "line": e.lineno, "column": e.colno},
        ) from e
    if not isinstance(value, dict):
        raise InputError(f"{origin}: the policy data must be a JSON object")
    return value


# "<file>:<row>: <code>: <message>", optionally followed by a tab-indented source line
# and a caret line, is how OPA formats each error of a failed compile.
_ERROR_HEAD = re.compile(r"(?P<file>[^\s:]+\.rego):(?P<row>\d+): (?P<message>rego_\w+: .*)$")
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.]*")


def parse_opa_errors(text: str, *, modules: Mapping[str, str]) -> list[CompileProblem]:
    """Locate each error in OPA's error text.

    The column comes from OPA's caret line when it gives one; otherwise it is where the
    last name the message mentions first appears on that line (OPA's type errors carry
    no column), or the line's first non-blank character.
    """
    problems: list[CompileProblem] = []
    lines = text.split("\n")
    for index, line in enumerate(lines):
        match = _ERROR_HEAD.search(line)
        if not match:
            continue
        file, row, message = match["file"], int(match["row"]), match["message"]
        column = _caret_column(lines[index + 1 : index + 3])
        if column is None:
            column = _guess_column(modules.get(file, ""), row, message)
        problems.append(CompileProblem(file=file, line=row, column=column, message=message))
    return problems


def _caret_column(details: list[str]) -> int | None:
    if len(details) == 2 and details[1].startswith("\t") and details[1].strip() == "^":
        return len(details[1]) - 1  # the caret's 1-based position after OPA's tab
    return None


def _guess_column(source: str, row: int, message: str) -> int:
    source_lines = source.split("\n")
    if not 0 < row <= len(source_lines):
        return 1
    text = source_lines[row - 1]
    _, _, detail = message.partition(": ")
    for name in reversed(_NAME.findall(detail)):
        position = text.find(name)
        if position >= 0:
            return position + 1
    return len(text) - len(text.lstrip()) + 1
