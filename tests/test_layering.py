"""Dependencies point down (STYLE.md "Shape"): read from the source with ``ast``.

Three rules over every module under ``app/``:

- a domain package never imports the layers that assemble or expose it (``app.services``,
  ``app.enforce``, ``app.hooks``, ``app.api``, ``app.cli``, ``app.main``, ``app.serving``),
  not even inside a function or under ``TYPE_CHECKING``: a lazy upward import is still an
  upward dependency; domain functions take the parts they use as arguments;
- no two app modules import each other, directly or through others, when their module
  bodies run. Imports inside functions and under ``TYPE_CHECKING`` are left out of this
  one: a function may name a module above it that is loaded by then (the CLI's commands do,
  to start fast), and annotations are not run;
- nor do two packages (``app.scans``, ``app.policy``...) depend on each other through their
  modules: a shared type lives in the lower one (``app.oci`` reads the settings through its
  own protocol, ``app.oci.settings``, not ``app.config``, which parses the mirror maps with
  ``app.oci``'s parsers).
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

APP = Path(__file__).resolve().parent.parent / "app"

# The packages that hold Sealgate's domain: each takes plain arguments (a session factory,
# a registry client, an engine, settings values) from the layers above.
DOMAIN_PACKAGES = (
    "app.audit",
    "app.auth",
    "app.db",
    "app.k8s",
    "app.oci",
    "app.policy",
    "app.scans",
    "app.signing",
    "app.transfer",
    "app.verify",
)
# The modules every layer shares; they sit below the domain.
BASE_MODULES = (
    "app.config",
    "app.error_codes",
    "app.errors",
    "app.failure_mode",
    "app.json_text",
    "app.limits",
    "app.observability",
    "app.timestamps",
)
# What assembles the domain (services, the decision pipeline, webhook processing) or
# exposes it (HTTP routes, CLI commands, the ASGI app and its server).
UPPER_LAYERS = (
    "app.api",
    "app.cli",
    "app.enforce",
    "app.hooks",
    "app.main",
    "app.serving",
    "app.services",
)


@dataclass(frozen=True)
class Import:
    """One import of an app module: where it is and whether it runs with the module body."""

    target: str
    line: int
    at_module_level: bool


def module_name(path: Path) -> str:
    parts = path.relative_to(APP.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def app_modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(APP.rglob("*.py"))}


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _walk(node: ast.AST, *, module_level: bool) -> Iterator[tuple[ast.AST, bool]]:
    for child in ast.iter_child_nodes(node):
        if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda):
            yield from _walk(child, module_level=False)
        elif isinstance(child, ast.If) and _is_type_checking(child.test):
            for stmt in child.body:
                yield stmt, False
                yield from _walk(stmt, module_level=False)
            for stmt in child.orelse:
                yield stmt, module_level
                yield from _walk(stmt, module_level=module_level)
        else:
            yield child, module_level
            yield from _walk(child, module_level=module_level)


def imports_of(name: str, path: Path, modules: dict[str, Path]) -> list[Import]:
    """The app modules that module ``name`` imports. ``from app.x import y`` names the
    module ``app.x.y`` when there is one, else ``app.x``; relative imports are resolved."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = []
    for node, module_level in _walk(ast.parse(path.read_text(), str(path)), module_level=True):
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, *([base] if base else [])])
            targets = [
                f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base
                for alias in node.names
            ]
        for target in targets:
            if target == "app" or target.startswith("app."):
                found.append(Import(target, getattr(node, "lineno", 0), module_level))
    return found


def _within(name: str, packages: tuple[str, ...]) -> bool:
    return any(name == p or name.startswith(p + ".") for p in packages)


def upward_imports() -> list[str]:
    modules = app_modules()
    return [
        f"{modules[name].relative_to(APP.parent)}:{imp.line} imports {imp.target}"
        for name in modules
        if _within(name, DOMAIN_PACKAGES + BASE_MODULES)
        for imp in imports_of(name, modules[name], modules)
        if _within(imp.target, UPPER_LAYERS)
    ]


def module_level_graph() -> dict[str, list[str]]:
    """Each app module and the app modules its body imports when it runs."""
    modules = app_modules()
    return {
        name: sorted(
            {i.target for i in imports_of(name, path, modules) if i.at_module_level} - {name}
        )
        for name, path in modules.items()
    }


def package_graph() -> dict[str, list[str]]:
    """Each top-level package (or module) of app/ and the others its modules' bodies import."""

    def package(name: str) -> str:
        return ".".join(name.split(".")[:2])

    graph: dict[str, set[str]] = {}
    for name, targets in module_level_graph().items():
        graph.setdefault(package(name), set()).update(
            package(t) for t in targets if package(t) != package(name)
        )
    return {name: sorted(targets) for name, targets in graph.items()}


def cycles_in(graph: dict[str, list[str]]) -> list[list[str]]:
    """The strongly connected groups of more than one module (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in graph.get(node, []):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.append(member)
                if member == node:
                    break
            if len(group) > 1:
                cycles.append(sorted(group))

    for name in graph:
        if name not in index:
            visit(name)
    return cycles


class TestLayering:
    def test_listed_packages_exist(self) -> None:
        modules = app_modules()
        for package in DOMAIN_PACKAGES + BASE_MODULES + UPPER_LAYERS:
            assert package in modules, f"{package} is listed here but not under app/"

    def test_every_package_is_placed_in_a_layer(self) -> None:
        top_level = {name.split(".")[1] for name in app_modules() if name != "app"}
        placed = {n.split(".")[1] for n in DOMAIN_PACKAGES + BASE_MODULES + UPPER_LAYERS}
        assert top_level == placed, "a new app package or module: place it in a layer here"

    def test_domain_never_imports_the_layers_above(self) -> None:
        assert upward_imports() == []

    def test_no_import_cycles_at_module_level(self) -> None:
        assert cycles_in(module_level_graph()) == []

    def test_no_cycles_between_packages(self) -> None:
        assert cycles_in(package_graph()) == []

    def test_cycle_finder_sees_a_cycle(self) -> None:
        graph = {"a": ["b"], "b": ["c"], "c": ["a", "d"], "d": []}
        assert cycles_in(graph) == [["a", "b", "c"]]

    def test_reader_sees_imports(self) -> None:
        """The checks above would pass vacuously if the reader found no imports."""
        modules = app_modules()
        found = imports_of("app.verify.bundle", modules["app.verify.bundle"], modules)
        assert any(i.target == "app.verify.model" and i.at_module_level for i in found)
        lazy = imports_of("app.services", modules["app.services"], modules)
        assert any(i.target == "app.oci.client" and not i.at_module_level for i in lazy)
