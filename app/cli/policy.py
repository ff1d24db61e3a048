"""``sealgate policy``: test, check and evaluate Rego bundles; publish, activate and replay.

Authoring commands (``test``, ``check``, ``eval``, ``schema``) work on a directory and
need no database; ``input``, ``publish``, ``versions``, ``activate`` and ``replay`` use
the configured database. Every command calls the same domain functions as the API.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

import typer

from app.cli.context import open_services, run_with_services
from app.cli.groups import command_group
from app.cli.output import cli_errors, print_json
from app.errors import InputError, PolicyError

if TYPE_CHECKING:
    from app.policy.bundle import PolicyBundle
    from app.policy.input import Entrypoint
    from app.services import Services

policy_cli = command_group(help="Rego policies: author, test, publish, roll out.")

DirArgument = Annotated[
    Path | None,
    typer.Argument(help="Bundle directory (*.rego and data.json) [SEALGATE_POLICY_DIR]."),
]
# The values of ``app.policy.input.Entrypoint``, written out so that ``--help`` does not load
# pydantic (tests/cli/test_help.py checks they agree).
EntrypointName = Literal["sign", "push", "admission"]
EntrypointOption = Annotated[
    EntrypointName,
    typer.Option("--entrypoint", "-e", help="Where the decision is asked for."),
]


def _entrypoint(name: EntrypointName) -> Entrypoint:
    """The ``Entrypoint`` that ``--entrypoint`` names."""
    from app.policy.input import Entrypoint

    return Entrypoint(name)


def _bundle(directory: Path | None, *, with_overrides: bool = True) -> PolicyBundle:
    from app.config import get_settings
    from app.policy.bundle import PolicyBundle

    settings = get_settings()
    bundle = PolicyBundle.from_directory(directory or settings.policy_dir)
    return bundle.with_data_overrides(settings.policy_data) if with_overrides else bundle


def _print_problems(error: PolicyError) -> None:
    from app.policy.bundle import CompileProblem

    problems = error.details.get("problems") or []
    if not problems:
        typer.echo(f"error: {error.message}", err=True)
    for problem in problems:
        typer.echo(str(CompileProblem.model_validate(problem)), err=True)


@policy_cli.command("test")
@cli_errors
def test(directory: DirArgument = None) -> None:
    """Run every test_* rule; print failures with file and rule; end with 'N passed, M failed'."""
    from app.policy.runner import run_tests

    bundle = _bundle(directory, with_overrides=False)
    try:
        report = run_tests(bundle)
    except PolicyError as e:
        if e.code != "policy.compile":
            raise
        typer.echo("error: the bundle does not compile; no test ran", err=True)
        _print_problems(e)
        typer.echo("0 passed, 0 failed")
        raise typer.Exit(1) from None
    for failure in report.failures:
        test = failure.test
        typer.echo(f"FAIL {test.file}:{test.line}: {test.document}: {failure.message}")
    typer.echo(report.summary())
    if report.failed:
        raise typer.Exit(1)


@policy_cli.command("check")
@cli_errors
def check(directory: Annotated[Path, typer.Argument(help="Bundle directory.")]) -> None:
    """Compile a bundle; report each error as FILE:LINE:COLUMN: message."""
    from app.policy.engines import compile_bundle
    from app.policy.parameters import check_parameters

    bundle = _bundle(directory, with_overrides=False)
    check_parameters(bundle.data)
    try:
        compile_bundle(bundle).close()
    except PolicyError as e:
        if e.code != "policy.compile":
            raise
        _print_problems(e)
        raise typer.Exit(1) from None
    typer.echo(f"ok: {len(bundle.modules)} modules compile ({bundle.content_hash[:12]})")


@policy_cli.command("eval")
@cli_errors
def eval_(
    input_file: Annotated[Path, typer.Option("--input", "-i", help="Policy input JSON file.")],
    entrypoint: Annotated[
        EntrypointName | None,
        typer.Option(
            "--entrypoint", "-e", help="Decide for this entrypoint instead of the input's own."
        ),
    ] = None,
    bundle_dir: Annotated[
        Path | None, typer.Option("--bundle", help="Bundle directory [SEALGATE_POLICY_DIR].")
    ] = None,
    explain: Annotated[
        bool, typer.Option("--explain", help="Also list the rules that fired and why.")
    ] = False,
) -> None:
    """Print the decision for an input; with --explain, which rules fired and why."""
    from app.policy.engines import EmbeddedOpaEngine, decision_document
    from app.policy.explanation import fired_rules
    from app.policy.input import PolicyInput

    try:
        raw = json.loads(input_file.read_text())
    except OSError as e:
        raise InputError(f"cannot read {input_file}: {e.strerror}") from e
    except json.JSONDecodeError as e:
        raise InputError(f"{input_file}:{e.lineno}:{e.colno}: not valid JSON: {e.msg}") from e
    policy_input = PolicyInput.from_json(raw)
    if entrypoint is not None:
        policy_input = policy_input.model_copy(update={"entrypoint": _entrypoint(entrypoint)})
    bundle = _bundle(bundle_dir)
    engine = EmbeddedOpaEngine(bundle)
    try:
        if not explain:
            print_json(engine.decide(policy_input).model_dump(mode="json"))
            return
        document = decision_document(policy_input.entrypoint)
        value, trace = engine.evaluate(document, policy_input.to_rego(), trace=True)
    finally:
        engine.close()
    fired = fired_rules(trace, modules=bundle.modules)
    print_json({"decision": value, "fired": [rule.model_dump() for rule in fired]})
    for rule in fired:
        typer.echo(rule.render(), err=True)


@policy_cli.command("schema")
@cli_errors
def schema() -> None:
    """Print the JSON Schema of the policy input (version 1)."""
    from app.policy.input import input_schema

    print_json(input_schema())


@policy_cli.command("input")
@cli_errors
def input_(
    image: Annotated[str, typer.Argument(help="Image reference.")],
    entrypoint: EntrypointOption = "admission",
    namespace: Annotated[
        str | None, typer.Option("--namespace", help="Admission: the Kubernetes namespace.")
    ] = None,
    offline: Annotated[
        bool,
        typer.Option(
            "--offline",
            help="Do not read the registry: no digest resolution, no signatures "
            "(only the store's facts).",
        ),
    ] = False,
    digest: Annotated[
        str | None, typer.Option("--digest", help="With --offline: the manifest digest.")
    ] = None,
) -> None:
    """Print the policy input the service builds for IMAGE.

    Built exactly as ``sealgate policy decide`` and the API build it: the digest is
    resolved, signatures and attestations are verified against the stored authorities
    whose scope covers the image, and the scan is the newest authenticated upload, else a
    verified vulnerability attestation, else an unsigned scan referrer. For admission (the
    default) the Kubernetes context is a Pod CREATE in --namespace.
    """
    from app.enforce.deadline import Deadline
    from app.enforce.outcome import Actor, DecisionRequest
    from app.enforce.pipeline import input_for
    from app.policy.input import assumed_kubernetes

    chosen = _entrypoint(entrypoint)

    async def _input(services: Services) -> dict[str, Any]:
        request = DecisionRequest(
            image=image,
            entrypoint=chosen,
            deadline=Deadline(services.settings.decision_deadline),
            kubernetes=assumed_kubernetes(chosen, namespace),
            actor=Actor(kind="cli"),
        )
        return await input_for(request, services.decisions, offline=offline, offline_digest=digest)

    print_json(run_with_services(_input))


@policy_cli.command("decide")
@cli_errors
def decide(
    image: Annotated[str, typer.Argument(help="The image (a tag is resolved).")],
    entrypoint: EntrypointOption = "admission",
    namespace: Annotated[
        str | None, typer.Option(help="For admission: the namespace the Pod is created in.")
    ] = None,
) -> None:
    """Decide whether IMAGE passes the active policy, record the decision, print it.

    Exit 0 when allowed, 1 when denied (the reasons are in the JSON on stdout).
    """
    import asyncio

    from app.enforce.deadline import Deadline
    from app.enforce.outcome import Actor, DecisionRequest
    from app.enforce.pipeline import decide_and_store
    from app.policy.input import assumed_kubernetes
    from app.policy.versions import ActiveVersionPoller

    chosen = _entrypoint(entrypoint)

    async def _decide(services: Services) -> dict[str, Any]:
        poller = ActiveVersionPoller(
            engine_source=lambda: services.policy,
            sessions=services.sessions,
            data_override=services.settings.policy_data,
        )
        await asyncio.to_thread(poller.poll_once)
        request = DecisionRequest(
            image=image,
            entrypoint=chosen,
            deadline=Deadline(services.settings.decision_deadline),
            kubernetes=assumed_kubernetes(chosen, namespace),
            actor=Actor(kind="cli"),
        )
        outcome, decision_id = await decide_and_store(request, services.decisions)
        return {**outcome.model_dump(mode="json"), "decision_id": decision_id}

    answer = run_with_services(_decide)
    print_json(answer)
    if not answer["allowed"]:
        raise typer.Exit(1)


@policy_cli.command("publish")
@cli_errors
def publish(
    directory: DirArgument = None,
    message: Annotated[str, typer.Option("--message", "-m", help="Why this version.")] = "",
    author: Annotated[str, typer.Option("--author", help="Who publishes it.")] = "cli",
    activate: Annotated[
        bool, typer.Option("--activate/--no-activate", help="Make it the active version.")
    ] = True,
) -> None:
    """Store a bundle as a new version after it compiles and its tests pass."""
    from app.db.session import session_scope
    from app.policy.versions import publish_bundle
    from app.policy.worker import BundleLimits

    bundle = _bundle(directory, with_overrides=False)
    with open_services() as services, session_scope(services.sessions) as session:
        info = publish_bundle(
            session,
            bundle=bundle,
            author=author,
            message=message,
            activate=activate,
            limits=BundleLimits.from_settings(services.settings),
        )
    print_json(info.model_dump(mode="json"))


@policy_cli.command("versions")
@cli_errors
def versions() -> None:
    """List stored policy versions, newest first."""
    from app.db.session import session_scope
    from app.policy.versions import list_versions

    with open_services() as services, session_scope(services.sessions) as session:
        print_json([v.model_dump(mode="json") for v in list_versions(session)])


@policy_cli.command("activate")
@cli_errors
def activate(version: Annotated[int, typer.Argument(help="Version to activate.")]) -> None:
    """Activate a stored version (an older one rolls back); replicas follow within seconds."""
    from app.db.session import session_scope
    from app.policy.versions import activate_version

    with open_services() as services, session_scope(services.sessions) as session:
        info = activate_version(session, version=version)
    print_json(info.model_dump(mode="json"))


@policy_cli.command("replay")
@cli_errors
def replay(
    since: Annotated[str, typer.Option("--since", help="Window, e.g. 30m, 12h, 7d.")] = "7d",
    bundle_dir: Annotated[
        Path | None, typer.Option("--bundle", help="Candidate bundle [SEALGATE_POLICY_DIR].")
    ] = None,
) -> None:
    """Re-evaluate recorded decisions against a candidate bundle; print what would change."""
    from app.db.session import session_scope
    from app.policy.engines import EmbeddedOpaEngine
    from app.policy.replay import parse_since, replay_decisions

    span = parse_since(since)
    engine = EmbeddedOpaEngine(_bundle(bundle_dir))
    try:
        with open_services() as services, session_scope(services.sessions) as session:
            report = replay_decisions(session, engine=engine, since=span)
    finally:
        engine.close()
    body: dict[str, Any] = report.model_dump(mode="json")
    print_json(body)
    typer.echo(
        f"{report.replayed} replayed: {len(report.newly_denied)} newly denied, "
        f"{len(report.newly_allowed)} newly allowed, {report.unchanged} unchanged",
        err=True,
    )
