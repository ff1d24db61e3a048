"""The Rego test runner: finds every ``test_*`` rule in a bundle and evaluates it.

The embedded engine has no test runner of its own, so this one does what ``opa test``
does for the common case: each ``test_*`` rule (at the start of a line, in any module)
is evaluated as a document with an empty input, over the bundle's data. A test passes
when its document is defined and exactly ``true``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from app.errors import PolicyError
from app.policy.bundle import PolicyBundle
from app.policy.engines import EmbeddedOpaEngine

_PACKAGE = re.compile(r"^package\s+([A-Za-z_][\w.]*)\s*$", re.MULTILINE)
_TEST_RULE = re.compile(r"^(test_\w+)\b", re.MULTILINE)


@dataclass(frozen=True)
class RegoTest:
    file: str
    line: int
    package: str
    rule: str

    @property
    def document(self) -> str:
        return f"{self.package}.{self.rule}"


@dataclass(frozen=True)
class RegoTestResult:
    test: RegoTest
    passed: bool
    message: str = ""


@dataclass(frozen=True)
class RegoTestReport:
    results: list[RegoTestResult] = field(default_factory=list)

    @property
    def passed(self) -> int:
        return sum(1 for r in self.results if r.passed)

    @property
    def failed(self) -> int:
        return len(self.results) - self.passed

    @property
    def failures(self) -> list[RegoTestResult]:
        return [r for r in self.results if not r.passed]

    def summary(self) -> str:
        """The last line ``sealgate policy test`` prints: ``N passed, M failed``."""
        return f"{self.passed} passed, {self.failed} failed"


def discover_tests(bundle: PolicyBundle) -> list[RegoTest]:
    """Every ``test_*`` rule of every module, once each, in file order."""
    tests: list[RegoTest] = []
    for file, source in bundle.modules.items():
        package = _PACKAGE.search(source)
        if package is None:
            continue
        seen: set[str] = set()
        for match in _TEST_RULE.finditer(source):
            rule = match.group(1)
            if rule in seen:  # incremental definitions of one test are one document
                continue
            seen.add(rule)
            line = source.count("\n", 0, match.start()) + 1
            tests.append(RegoTest(file=file, line=line, package=package.group(1), rule=rule))
    return tests


def run_tests(bundle: PolicyBundle) -> RegoTestReport:
    """Compile ``bundle`` and run its tests.

    Raises PolicyError (``policy.compile``, naming file and line) when it does not
    compile; a test that errors counts as failed with the engine's message.
    """
    by_package: dict[str, list[RegoTest]] = {}
    for test in discover_tests(bundle):
        by_package.setdefault(test.package, []).append(test)
    engine = EmbeddedOpaEngine(bundle, prepare=False)  # tests ask no decision
    try:
        results = _run_all(engine, by_package)
    finally:
        engine.close()
    return RegoTestReport(results=results)


def _run_all(
    engine: EmbeddedOpaEngine, by_package: dict[str, list[RegoTest]]
) -> list[RegoTestResult]:
    """Evaluate every test package in one query (each query costs a compilation); when
    that fails, package by package, to find the culprit."""
    try:
        documents = engine.evaluate_many(list(by_package))
    except PolicyError:
        documents = {}
    if all(isinstance(documents.get(package), dict) for package in by_package):
        return [
            _judge(test, documents[package].get(test.rule, _UNDEFINED))
            for package, tests in by_package.items()
            for test in tests
        ]
    return [
        result
        for package, tests in by_package.items()
        for result in _run_package(engine, package, tests)
    ]


def _run_package(
    engine: EmbeddedOpaEngine, package: str, tests: list[RegoTest]
) -> list[RegoTestResult]:
    """Evaluate a test package as one document (preparing a query costs far more than
    evaluating it); when that fails, evaluate test by test to find the culprit."""
    try:
        document, _ = engine.evaluate(package, {})
    except PolicyError:
        return [_run_one(engine, test) for test in tests]
    if not isinstance(document, dict):
        return [_run_one(engine, test) for test in tests]
    return [_judge(test, document.get(test.rule, _UNDEFINED)) for test in tests]


_UNDEFINED = object()


def _judge(test: RegoTest, value: object) -> RegoTestResult:
    if value is True:
        return RegoTestResult(test=test, passed=True)
    if value is _UNDEFINED:
        return RegoTestResult(test=test, passed=False, message="undefined (a condition failed)")
    return RegoTestResult(test=test, passed=False, message=f"evaluated to {value!r}, not true")


def _run_one(engine: EmbeddedOpaEngine, test: RegoTest) -> RegoTestResult:
    try:
        value, _ = engine.evaluate(test.document, {})
    except PolicyError as e:
        if e.code == "policy.undefined":
            return _judge(test, _UNDEFINED)
        return RegoTestResult(test=test, passed=False, message=e.message)
    return _judge(test, value)
