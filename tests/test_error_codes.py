"""The error-code catalogue: every code in app/ is declared, every declaration is used,
each has one status and one meaning, and docs/errors.md is generated from it."""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass
from pathlib import Path

import pytest

from app.audit.entry import AuditKind
from app.audit.verification import ProblemKind
from app.error_codes import _CATALOGUE, CODES, ErrorCode, http_status_of, render_markdown
from app.errors import Error, RegistryError, ScanError

ROOT = Path(__file__).resolve().parent.parent
APP = ROOT / "app"
CATALOGUE_FILE = APP / "error_codes.py"
DOC = ROOT / "docs" / "errors.md"

DOMAINS = frozenset(c.domain for c in CODES.values())
# A code is a domain and one name: ``registry.timeout``. Three-part names are never codes
# (``harbor.artifact.pushed`` is a CloudEvent type).
_DOTTED = re.compile(r"[a-z][a-z0-9_]*\.[a-z][a-z0-9_]*")
_PREFIX = re.compile(r"[a-z][a-z0-9_]*\.")
# Strings shaped like a code of a catalogue domain that are something else.
NOT_CODES = frozenset(
    {
        "http.request",  # an ASGI message type
        "http.send",  # a Rego built-in
        "config.json",  # Docker's credentials file
        *(kind.value for kind in AuditKind),  # audit record kinds (policy.publish...)
    }
)
# Codes put together at run time: the file, the domain, and every code it can build.
BUILT = {
    ("app/cli/audit.py", "audit"): frozenset(f"audit.{kind.value}" for kind in ProblemKind),
}


@dataclass(frozen=True)
class Found:
    """What a scan of source found: codes (by place), prefixes, and run-time built codes."""

    codes: dict[str, list[str]]
    prefixes: dict[str, list[str]]
    built: dict[tuple[str, str], list[str]]


def _is_code_position(node: ast.Constant, parent: ast.AST | None) -> bool:
    """Where a string names a code whatever it looks like: ``code="..."``,
    ``default_code = "..."``, ``code, reason = "...", ...``, ``{"code": "..."}``, the
    default of a ``code`` parameter and the fallback in ``error.get("code") or "..."``."""
    if isinstance(parent, ast.keyword):
        return parent.arg == "code"
    if isinstance(parent, ast.Assign):
        return any(isinstance(t, ast.Name) and t.id == "default_code" for t in parent.targets)
    if isinstance(parent, ast.Tuple):
        return False  # see _tuple_assigned_codes
    if isinstance(parent, ast.Dict) and node in parent.values:
        key = parent.keys[parent.values.index(node)]
        return isinstance(key, ast.Constant) and key.value == "code"
    if isinstance(parent, ast.arguments):
        positional = [*parent.posonlyargs, *parent.args]
        with_defaults = positional[len(positional) - len(parent.defaults) :]
        pairs = [
            *zip(with_defaults, parent.defaults, strict=True),
            *zip(parent.kwonlyargs, parent.kw_defaults, strict=True),
        ]
        return any(arg.arg == "code" and value is node for arg, value in pairs)
    if isinstance(parent, ast.BoolOp):
        return any(
            isinstance(v, ast.Call)
            and isinstance(v.func, ast.Attribute)
            and v.func.attr == "get"
            and [ast.literal_eval(a) for a in v.args if isinstance(a, ast.Constant)][:1] == ["code"]
            for v in parent.values
        )
    return False


def _tuple_assigned_codes(tree: ast.AST) -> set[ast.AST]:
    """The values given to ``code`` in ``code, reason = "...", ...``."""
    chosen: set[ast.AST] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign) and isinstance(node.value, ast.Tuple):
            for target in node.targets:
                if isinstance(target, ast.Tuple):
                    for name, value in zip(target.elts, node.value.elts, strict=False):
                        if isinstance(name, ast.Name) and name.id == "code":
                            chosen.add(value)
    return chosen


def scan(source: str, where: str, found: Found) -> None:
    """Add the codes named in ``source`` (a module of ``app/`` at ``where``) to ``found``."""
    tree = ast.parse(source)
    parents: dict[ast.AST, ast.AST] = {}
    for node in ast.walk(tree):
        for child in ast.iter_child_nodes(node):
            parents[child] = node
    assigned = _tuple_assigned_codes(tree)
    for node in ast.walk(tree):
        if isinstance(node, ast.JoinedStr):
            for part, after in zip(node.values, node.values[1:], strict=False):
                if not (isinstance(part, ast.Constant) and isinstance(after, ast.FormattedValue)):
                    continue
                tail = re.search(r"(?<![\w.])([a-z][a-z0-9_]*)\.$", str(part.value))
                if tail and tail.group(1) in DOMAINS:
                    found.built.setdefault((where, tail.group(1)), []).append(
                        f"{where}:{node.lineno}"
                    )
            continue
        if not (isinstance(node, ast.Constant) and isinstance(node.value, str)):
            continue
        text, place = node.value, f"{where}:{node.lineno}"
        if node in assigned or _is_code_position(node, parents.get(node)):
            found.codes.setdefault(text, []).append(place)
        elif _DOTTED.fullmatch(text) and text.partition(".")[0] in DOMAINS:
            if text not in NOT_CODES:
                found.codes.setdefault(text, []).append(place)
        elif _PREFIX.fullmatch(text) and text[:-1] in DOMAINS:
            found.prefixes.setdefault(text, []).append(place)


@pytest.fixture(scope="module")
def found() -> Found:
    result = Found(codes={}, prefixes={}, built={})
    for path in sorted(APP.rglob("*.py")):
        if path != CATALOGUE_FILE:
            scan(path.read_text(), str(path.relative_to(ROOT)), result)
    return result


class TestCatalogueCoversTheCode:
    def test_every_code_in_app_is_in_the_catalogue(self, found: Found) -> None:
        unknown = {code: places for code, places in found.codes.items() if code not in CODES}
        assert not unknown, f"declare these in app/error_codes.py: {unknown}"

    def test_every_catalogue_code_is_used(self, found: Found) -> None:
        used = set(found.codes).union(*BUILT.values())
        dead = sorted(set(CODES) - used)
        assert not dead, f"no code in app/ produces these; remove them: {dead}"

    def test_codes_are_built_only_where_listed(self, found: Found) -> None:
        assert set(found.built) == set(BUILT), found.built
        for built in BUILT.values():
            assert built <= set(CODES), sorted(built - set(CODES))

    def test_prefixes_name_codes(self, found: Found) -> None:
        assert found.prefixes, "the scan no longer sees the pipeline's prefixes"
        for prefix, places in found.prefixes.items():
            assert any(code.startswith(prefix) for code in CODES), (prefix, places)


class TestTheScan:
    """The scan above finds codes wherever app/ writes them (so the tests above can fail)."""

    SOURCE = """
class MadeUpError(Error):
    default_code = "made.default"

def f(code: str = "made.parameter") -> None:
    raise InputError("x", code="made.keyword")

def g(error) -> None:
    body = {"error": {"code": "made.body"}}
    raise Error("x", code=str(error.get("code") or "made.fallback"))

def h(text: str = "not a code") -> None:
    code, reason = "made.assigned", f"unreadable: {text}"
    named = text or "not a code either"

FIXES = {"made.key": "fix", "registry.made_up": "fix", "registry.": "fix"}
WHERE = f"[made.{kind}]"
NOT_A_CODE = "http.request"
"""

    def test_finds_every_position(self) -> None:
        found = Found(codes={}, prefixes={}, built={})
        scan(self.SOURCE, "app/made.py", found)
        named = {"made.default", "made.parameter", "made.keyword", "made.body", "made.fallback"}
        named.add("made.assigned")
        # A dotted string of an unknown domain in no code position is not taken for a code.
        assert set(found.codes) == named | {"registry.made_up"}
        assert set(found.prefixes) == {"registry."}
        assert set(found.built) == set()  # ``made`` is no catalogue domain

    def test_finds_a_built_code_of_a_catalogue_domain(self) -> None:
        found = Found(codes={}, prefixes={}, built={})
        scan('WHERE = f"[registry.{kind}]"', "app/made.py", found)
        assert set(found.built) == {("app/made.py", "registry")}


class TestCatalogue:
    def test_no_code_is_declared_twice(self) -> None:
        assert len(_CATALOGUE) == len(CODES)

    @pytest.mark.parametrize("entry", _CATALOGUE, ids=lambda e: e.code)
    def test_each_entry_is_a_code_a_status_and_one_line(self, entry: ErrorCode) -> None:
        assert re.fullmatch(r"[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)?", entry.code)
        assert entry.http_status is None or 400 <= entry.http_status <= 599
        assert entry.meaning.strip() == entry.meaning and "\n" not in entry.meaning
        assert entry.meaning[:1].isupper() and entry.meaning.endswith(".")
        assert "|" not in entry.meaning  # it sits in a Markdown table

    def test_the_frameworks_statuses_each_have_a_code(self) -> None:
        from app.main import _HTTP_ERROR_CODES

        assert set(_HTTP_ERROR_CODES) == {400, 401, 403, 404, 405, 413, 415}

    def test_an_errors_status_is_its_codes_not_its_classes(self) -> None:
        assert RegistryError("r", code="registry.not_found").http_status == 404
        assert RegistryError("r", code="registry.timeout").http_status == 504
        assert ScanError("s", code="scan.too_large").http_status == 413
        assert ScanError("s").http_status == CODES["scan.invalid"].http_status == 400

    def test_a_code_with_no_status_is_answered_500(self) -> None:
        assert CODES["cli.unreachable"].http_status is None
        assert Error("x", code="cli.unreachable").http_status == 500
        assert http_status_of("no.such_code") == 500


class TestDocs:
    def test_docs_errors_md_is_generated_from_the_catalogue(self) -> None:
        assert DOC.read_text() == render_markdown(), (
            "docs/errors.md is stale: regenerate it with `sealgate errors --markdown > "
            "docs/errors.md`"
        )

    def test_every_code_is_in_the_docs_under_its_domain(self) -> None:
        text = render_markdown()
        for entry in CODES.values():
            heading = text.index(f"\n## {entry.domain}\n")
            row = text.index(f"| `{entry.code}` |")
            following = text.find("\n## ", heading + 1)
            assert heading < row < (following if following != -1 else len(text)), entry.code
