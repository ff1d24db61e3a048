"""Policy engines: OPA's Go engine in process (default) or an OPA server over REST.

Both implement ``PolicyEngine`` and give identical decisions for the same bundle and
input: each entry point's decision is the document ``data.sealgate.<entrypoint>.decision``
and the bundle's parameters live at ``data.parameters``. Every failure to decide
(engine error, undefined document, time-out, unreachable server, a result that breaks
the contract) raises ``PolicyError``; callers deny on it (fail closed).
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
import threading
from collections.abc import Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import urlsplit

from app.config import Settings
from app.errors import ConfigError, DeadlineError, PolicyError
from app.policy.bundle import DATA_ROOT, CompileProblem, PolicyBundle, parse_opa_errors
from app.policy.decision import PolicyDecision
from app.policy.input import Entrypoint, PolicyInput
from app.policy.opa_native import check_binding, eval_document_encoded
from app.policy.parameters import check_parameters

if TYPE_CHECKING:
    from opa_bindings import OpaEngine

log = logging.getLogger("sealgate.policy")

OPA_SERVER_TIMEOUT = 2.0


def decision_document(entrypoint: Entrypoint) -> str:
    """The dotted path (under ``data``) of an entry point's decision."""
    return f"sealgate.{entrypoint.value}.decision"


@dataclass(frozen=True)
class EngineAnswer:
    """A decision with the bundle that made it: its content hash and stored version
    (None while the engine holds the policy directory rather than a stored version)."""

    decision: PolicyDecision
    revision: str | None
    version: int | None


class PolicyEngine(Protocol):
    """What the rest of Sealgate needs from a Rego engine."""

    @property
    def revision(self) -> str | None:
        """Content hash of the loaded bundle, None before the first load."""

    @property
    def version(self) -> int | None:
        """Stored policy version of the loaded bundle, None for the policy directory."""

    def load(self, bundle: PolicyBundle, *, version: int | None = None) -> None:
        """Replace the loaded bundle (stored as ``version``); on a compile error raise
        PolicyError and keep the old."""

    def decide(self, policy_input: PolicyInput) -> PolicyDecision:
        """The decision of the input's entry point; PolicyError when none can be made."""

    def answer(self, entrypoint: Entrypoint, encoded_input: bytes) -> EngineAnswer:
        """The decision for an input already encoded as JSON, with the revision and
        version of the bundle that made it (read together with the engine, so a
        concurrent load can never make a decision name the wrong bundle)."""

    def check_health(self) -> None:
        """Raise PolicyError unless the engine can evaluate."""

    def close(self) -> None: ...


def compile_error(problems: list[CompileProblem], *, fallback: str) -> PolicyError:
    """A PolicyError naming the first problem's file and line, with all of them in details."""
    if not problems:
        return PolicyError(f"the policy bundle does not compile: {fallback}", code="policy.compile")
    first = problems[0]
    more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
    return PolicyError(
        f"the policy bundle does not compile: {first}{more}",
        code="policy.compile",
        details={"problems": [p.model_dump() for p in problems]},
    )


def _new_opa() -> OpaEngine:
    # Go's collector settings come from the process's start (``app.policy.go_gc``).
    try:
        from opa_bindings import OpaEngine
    except ImportError as e:  # pragma: no cover - depends on the install
        raise PolicyError(
            "the embedded OPA engine is not installed: run `make install` "
            "(pip install --ignore-requires-python opa-golib-python-bindings==0.4.4)",
            code="policy.engine_missing",
        ) from e
    return OpaEngine()


def compile_bundle(bundle: PolicyBundle) -> OpaEngine:
    """A fresh in-process OPA engine with ``bundle`` loaded and compiled.

    Raises PolicyError (code ``policy.compile``) naming file, line and column.
    """
    from opa_bindings import OpaError

    opa = _new_opa()
    check_binding(opa)
    try:
        for name, source in bundle.modules.items():
            opa.add_policy(name, source)
        opa.add_data(bundle.data, path=DATA_ROOT)
        # Modules are compiled together when the first query is prepared.
        opa.eval_query("true", {})
    except OpaError as e:
        opa.close()
        problems = parse_opa_errors(e.message, modules=bundle.modules)
        raise compile_error(problems, fallback=e.message) from e
    return opa


@dataclass(frozen=True)
class _Loaded:
    """What one load put in place; swapped as a whole so readers never mix two loads."""

    opa: OpaEngine
    revision: str | None
    version: int | None


class EmbeddedOpaEngine:
    """OPA's own Go engine loaded in process through ``opa_bindings``.

    A load compiles the new bundle in a fresh OPA engine and swaps it in, together with
    its revision and version; evaluations already running finish on the engine they
    started with, and their answers name that engine's bundle.
    """

    def __init__(self, bundle: PolicyBundle | None = None, *, prepare: bool = True) -> None:
        self._loaded = _Loaded(opa=_new_opa(), revision=None, version=None)
        self._swap = threading.Lock()
        if bundle is not None:
            self.load(bundle, prepare=prepare)

    @property
    def _opa(self) -> OpaEngine:
        return self._loaded.opa

    @property
    def revision(self) -> str | None:
        return self._loaded.revision

    @property
    def version(self) -> int | None:
        return self._loaded.version

    def load(
        self, bundle: PolicyBundle, *, version: int | None = None, prepare: bool = True
    ) -> None:
        """Compile ``bundle`` and swap it in (as stored ``version``); ``prepare=False``
        skips preparing the decision queries (for an engine that only runs the tests)."""
        fresh = compile_bundle(bundle)
        if prepare:
            _prepare_decisions(fresh)
        with self._swap:
            # The old engine is released when the last evaluation holding it returns.
            self._loaded = _Loaded(opa=fresh, revision=bundle.content_hash, version=version)

    def evaluate(
        self, document: str, input_document: dict[str, Any], *, trace: bool = False
    ) -> tuple[Any, list[dict[str, Any]]]:
        """Evaluate ``data.<document>``; returns the value and, with ``trace``, OPA's trace."""
        opa = self._opa
        with _engine_errors(document):
            value = opa.eval_document(document, input_document, trace=trace)
            events: list[dict[str, Any]] = list(opa.last_trace or []) if trace else []
        return value, events

    def evaluate_many(self, documents: list[str]) -> dict[str, Any]:
        """Evaluate several ``data.<document>`` paths over an empty input in one query
        (each query the binding runs costs a compilation, which far outweighs evaluating).

        Raises PolicyError (``policy.undefined``) when any of them is undefined.
        """
        named = ", ".join(f"{json.dumps(document)}: data.{document}" for document in documents)
        with _engine_errors(", ".join(documents)):
            bindings = self._opa.eval_query(f"documents := {{{named}}}", {})
        if not bindings:
            raise PolicyError(
                f"one of data.{', data.'.join(documents)} is undefined", code="policy.undefined"
            )
        values: dict[str, Any] = bindings[0]["documents"]
        return values

    def decide(self, policy_input: PolicyInput) -> PolicyDecision:
        document = decision_document(policy_input.entrypoint)
        value, _ = self.evaluate(document, policy_input.to_rego())
        return PolicyDecision.from_result(value, document=f"data.{document}")

    def answer(self, entrypoint: Entrypoint, encoded_input: bytes) -> EngineAnswer:
        loaded = self._loaded
        document = decision_document(entrypoint)
        with _engine_errors(document):
            value = eval_document_encoded(loaded.opa, document, encoded_input)
        decision = PolicyDecision.from_result(value, document=f"data.{document}")
        return EngineAnswer(decision=decision, revision=loaded.revision, version=loaded.version)

    def check_health(self) -> None:
        try:
            self._opa.eval_query("x := 1", {})
        except Exception as e:
            raise PolicyError(f"embedded OPA engine failed: {e}", code="policy.engine") from e

    def close(self) -> None:
        self._opa.close()


@contextlib.contextmanager
def _engine_errors(document: str) -> Iterator[None]:
    """Translate the binding's errors for ``data.<document>`` into PolicyError."""
    from opa_bindings import OpaError, OpaUndefinedError

    try:
        yield
    except OpaUndefinedError as e:
        raise PolicyError(f"the policy defines no data.{document}", code="policy.undefined") from e
    except OpaError as e:
        raise PolicyError(
            f"the policy engine failed on data.{document}: {e.message}", code="policy.engine"
        ) from e


def _prepare_decisions(opa: OpaEngine) -> None:
    """Prepare each entry point's query before the engine serves, so the first decision
    after a load does not pay for it (preparing costs far more than evaluating)."""
    from opa_bindings import OpaError

    for entrypoint in Entrypoint:
        # An empty input may be undefined or refused; the query is prepared either way.
        with contextlib.suppress(OpaError):
            opa.eval_document(decision_document(entrypoint), {})


class OpaServerEngine:
    """An OPA server reached through ``opa-python-client``.

    Loading pushes every module (``PUT /v1/policies/sealgate/<path>``, never with the
    client's v0 rewriting) and the parameters (``PUT /v1/data/parameters``), then removes
    ``sealgate/`` modules the new bundle lacks (on the first load, those the server lists,
    so a renamed file of an earlier run does not linger). A server compiles each
    module against all the others, so modules are pushed in passes until all are in.
    Decisions are ``POST /v1/data/sealgate/<entrypoint>/decision``.
    """

    POLICY_PREFIX = "sealgate/"

    def __init__(self, url: str, *, timeout: float = OPA_SERVER_TIMEOUT) -> None:
        from opa_client import OpaClient

        parts = urlsplit(url)
        if parts.scheme not in {"http", "https"} or not parts.hostname:
            raise ConfigError(f"SEALGATE_OPA_URL {url!r} must be http(s)://host[:port]")
        self.url = url
        self._client = OpaClient(
            host=parts.hostname,
            port=parts.port or (443 if parts.scheme == "https" else 8181),
            ssl=parts.scheme == "https",
            timeout=timeout,
            retries=1,
        )
        self._revision: str | None = None
        self._version: int | None = None
        self._modules: set[str] | None = None  # what this engine pushed; None: ask the server
        # Held by loads, and by decisions only long enough to read revision and version:
        # a server has one bundle, so a decision names the bundle last fully pushed.
        self._lock = threading.Lock()

    @property
    def revision(self) -> str | None:
        return self._revision

    @property
    def version(self) -> int | None:
        return self._version

    def load(self, bundle: PolicyBundle, *, version: int | None = None) -> None:
        with self._lock:
            pending = {
                self.POLICY_PREFIX + name: bundle.modules[name]
                for name in dependency_order(bundle.modules)
            }
            while pending:
                before = len(pending)
                rejected = self._push_modules(pending)
                if len(pending) == before:
                    raise self._rejected(rejected)
            self._call(
                "push the policy data",
                lambda: self._client.update_or_create_data(bundle.data, DATA_ROOT),
            )
            loaded = {self.POLICY_PREFIX + name for name in bundle.modules}
            if self._modules is None:  # a restart: modules of an older bundle may be there
                listed = self._call("list its policies", self._client.get_policies_list)
                self._modules = {p for p in listed if p.startswith(self.POLICY_PREFIX)}
            for stale in sorted(self._modules - loaded):
                self._call("remove a stale module", lambda s=stale: self._client.delete_policy(s))
            self._modules = loaded
            self._revision, self._version = bundle.content_hash, version

    def _push_modules(self, pending: dict[str, str]) -> list[Any]:
        """One pass over the modules not yet accepted; returns the server's rejections."""
        from opa_client.errors import RegoParseError

        rejected: list[Any] = []
        for policy_id, text in list(pending.items()):
            try:
                self._call(
                    f"accept module {policy_id}",
                    lambda p=policy_id, t=text: self._client.update_policy_from_string(
                        t, p, rego_compat=False
                    ),
                )
            except PolicyError as e:
                if not isinstance(e.__cause__, RegoParseError):
                    raise
                rejected.append(e.__cause__)
            else:
                del pending[policy_id]
        return rejected

    def _rejected(self, rejected: list[Any]) -> PolicyError:
        problems: list[CompileProblem] = []
        for error in rejected:
            for item in getattr(error, "errors", None) or []:
                location = item.get("location") or {}
                file = str(location.get("file", "?")).removeprefix(self.POLICY_PREFIX)
                problems.append(
                    CompileProblem(
                        file=file,
                        line=int(location.get("row", 0)),
                        column=int(location.get("col", 0)),
                        message=f"{item.get('code')}: {item.get('message')}",
                    )
                )
        fallback = "; ".join(_describe(e) for e in rejected)
        return compile_error(problems, fallback=fallback)

    def _call(self, what: str, action: Any) -> Any:
        try:
            return action()
        except Exception as e:
            raise PolicyError(
                f"the OPA server at {self.url} failed to {what}: {_describe(e)}",
                code="policy.engine",
            ) from e

    def decide(self, policy_input: PolicyInput) -> PolicyDecision:
        return self._query(policy_input.entrypoint, policy_input.to_rego())

    def answer(self, entrypoint: Entrypoint, encoded_input: bytes) -> EngineAnswer:
        # A load in progress on the server would mix bundles: wait for it to finish.
        with self._lock:
            revision, version = self._revision, self._version
        decision = self._query(entrypoint, json.loads(encoded_input))
        return EngineAnswer(decision=decision, revision=revision, version=version)

    def _query(self, entrypoint: Entrypoint, input_document: dict[str, Any]) -> PolicyDecision:
        entry = entrypoint.value
        body = self._call(
            f"decide {entry}",
            lambda: self._client.query_rule(input_document, f"sealgate/{entry}", "decision"),
        )
        document = decision_document(entrypoint)
        if not isinstance(body, dict) or "result" not in body:
            raise PolicyError(
                f"the OPA server at {self.url} has no data.{document}", code="policy.undefined"
            )
        return PolicyDecision.from_result(body["result"], document=f"data.{document}")

    def check_health(self) -> None:
        healthy = self._call("answer /health", self._client.check_health)
        if not healthy:
            raise PolicyError(f"the OPA server at {self.url} is not healthy", code="policy.engine")

    def close(self) -> None:
        self._client.close_connection()


_PACKAGE = re.compile(r"^package\s+([\w.]+)", re.MULTILINE)
_IMPORT = re.compile(r"^import\s+data\.([\w.]+)", re.MULTILINE)


def dependency_order(modules: Mapping[str, str]) -> list[str]:
    """Module names ordered so that, as far as imports say, a package comes before the
    modules importing it (a server compiles each module it is given against those it
    has: pushing in this order avoids rejected pushes). Cycles keep file order."""
    packages = {
        name: (m.group(1) if (m := _PACKAGE.search(text)) else "") for name, text in modules.items()
    }
    imports = {name: set(_IMPORT.findall(text)) for name, text in modules.items()}
    ordered: list[str] = []
    placed: set[str] = set()

    def place(name: str, visiting: set[str]) -> None:
        if name in placed or name in visiting:
            return
        visiting.add(name)
        for other, package in packages.items():
            if (
                other != name
                and package
                and any(
                    imported == package or imported.startswith(package + ".")
                    for imported in imports[name]
                )
            ):
                place(other, visiting)
        placed.add(name)
        ordered.append(name)

    for name in sorted(modules):
        place(name, set())
    return ordered


def _describe(error: Exception) -> str:
    message = getattr(error, "message", None)
    return str(message) if message else f"{type(error).__name__}: {error}"


_EVALUATIONS = ThreadPoolExecutor(max_workers=4, thread_name_prefix="policy-eval")


def decide_within(
    engine: PolicyEngine, *, policy_input: PolicyInput, seconds: float
) -> PolicyDecision:
    """``engine.decide`` with a time budget: DeadlineError (``deadline.policy``) when it runs out.

    The embedded engine cannot be interrupted, so an evaluation that overruns keeps a
    worker until it ends; with every worker busy, further decisions time out too (fail
    closed). The OPA server engine has its own HTTP time-out as well.
    """
    future = _EVALUATIONS.submit(engine.decide, policy_input)
    try:
        return future.result(timeout=seconds)
    except FutureTimeout as e:
        future.cancel()
        raise DeadlineError(
            f"the policy engine did not decide {policy_input.image.reference} "
            f"({policy_input.entrypoint.value}) within {seconds:g}s",
            code="deadline.policy",
        ) from e


def load_configured_bundle(settings: Settings) -> PolicyBundle:
    """The bundle in ``settings.policy_dir`` with ``settings.policy_data`` merged over it.

    Raises PolicyError when the merged parameters are unusable (see ``parameters``).
    """
    bundle = PolicyBundle.from_directory(settings.policy_dir).with_data_overrides(
        settings.policy_data
    )
    check_parameters(bundle.data)
    return bundle


def build_engine(settings: Settings) -> PolicyEngine:
    """The configured engine, loaded with the configured bundle when its directory exists.

    A missing policy directory leaves the engine empty: every decision then fails
    closed with ``policy.undefined`` until a version is activated.
    """
    engine: PolicyEngine = (
        OpaServerEngine(settings.opa_url) if settings.opa_url else EmbeddedOpaEngine()
    )
    if settings.policy_dir.is_dir():
        engine.load(load_configured_bundle(settings))
    else:
        log.warning(
            "policy directory missing; decisions fail closed until a version is activated",
            extra={"policy_dir": str(settings.policy_dir)},
        )
    return engine
