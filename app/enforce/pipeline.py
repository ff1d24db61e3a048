"""The decision pipeline: one straight line from an image to a recorded outcome.

Every enforcement point (admission, the push worker, the sign gate, ``POST
/v1/decisions``, ``sealgate policy decide``) calls ``decide``:

1. **resolve** the reference to a digest (cache: tag → digest; a failing registry is
   remembered for a few seconds);
2. **load** the store's context: the authorities whose scope covers the image and the
   newest authenticated scan of the digest (kept in memory, see ``StoreContext``);
3. **collect** the registry's evidence once: one referrer listing, filtered here for
   signatures, attestations and scan reports, plus the legacy ``.sig`` tag;
4. **verify** what was collected against those authorities (pure code, off the loop);
   steps 3 and 4 are cached per (digest, trust revision) and concurrent decisions about
   one digest share one fetch;
5. **build** the policy input (findings encoded once per scan);
6. **decide** with the engine, which answers with the policy version and revision it
   used (cache: the input without its time, plus the policy revision, valid until the
   earliest of a TTL and the ``valid_until_ns`` the policy returns);
7. return a frozen ``Outcome`` and hand it to the batching recorder.

All of it runs under the request's one deadline. Any failure becomes an outcome with its
original stable code (``registry.timeout``, ``deadline.registry``, ``evidence.scan``,
``policy.busy``...): a denial in ``closed`` mode, an allow with a warning in ``open``
mode, recorded either way. Only an invalid image reference raises (``InputError``).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import functools
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from typing import TypeVar

import orjson
from sqlalchemy.orm import Session, sessionmaker

from app.config import Settings
from app.enforce.caches import CacheSettings, DecisionCaches
from app.enforce.context import StoreContext
from app.enforce.deadline import Deadline
from app.enforce.engine_slots import EngineSlots
from app.enforce.outcome import DecisionRequest, Outcome
from app.enforce.records import DecisionRecorder
from app.errors import Error, InputError
from app.failure_mode import FailureMode
from app.limits import MAX_SCAN_FINDINGS
from app.oci.client import RegistryClient
from app.oci.mirrors import served_from
from app.oci.refs import ImageRef
from app.policy.decision import Finding, PolicyDecision
from app.policy.engines import EngineAnswer, PolicyEngine
from app.policy.findings import EncodedInput, ScanSnapshot, encode_input
from app.policy.input import (
    AttestationFacts,
    ImageFacts,
    KubernetesContext,
    PolicyInput,
    PolicyVulnerability,
    SignatureFacts,
    build_input,
)
from app.scans.attestation import VULN_PREDICATE_TYPE, report_from_vuln_predicate
from app.scans.ingest import scan_referrers
from app.scans.model import ScanReport, ScanSource
from app.verify.evidence import evidence_from_referrers, legacy_evidence
from app.verify.model import Rejection, VerifiedSignature
from app.verify.signatures import is_image_signature, verify_candidates
from app.verify.trust import TrustAuthority

log = logging.getLogger(__name__)

T = TypeVar("T")


@dataclass
class DecisionParts:
    """What ``decide`` uses: registry client, store context, engine, caches, recorder.

    ``registry`` and ``engine`` are read through callables so that the parts outlive a
    registry client closed and rebuilt in another event loop (CLI, tests).
    """

    registry_source: Callable[[], RegistryClient]
    context: StoreContext
    engine: Callable[[], PolicyEngine]
    caches: DecisionCaches
    slots: EngineSlots
    recorder: DecisionRecorder | None = None
    # Registry scan reports with more findings are skipped (SEALGATE_MAX_SCAN_FINDINGS).
    max_scan_findings: int = MAX_SCAN_FINDINGS

    @property
    def registry(self) -> RegistryClient:
        return self.registry_source()

    def close(self) -> None:
        """Flush the recorder and stop the engine workers."""
        if self.recorder is not None:
            self.recorder.close()
        self.slots.close()


def build_parts(
    *,
    settings: Settings,
    sessions: sessionmaker[Session],
    registry: Callable[[], RegistryClient],
    engine: Callable[[], PolicyEngine],
) -> DecisionParts:
    """The pipeline's parts as ``settings`` configure them."""
    caches = DecisionCaches.build(
        CacheSettings(
            tag_ttl=settings.cache_tag_ttl,
            evidence_ttl=settings.cache_evidence_ttl,
            failure_ttl=settings.cache_failure_ttl,
            decision_ttl=settings.cache_decision_ttl,
            max_entries=settings.cache_max_entries,
            decision_max_bytes=settings.cache_decision_max_bytes,
        )
    )
    return DecisionParts(
        registry_source=registry,
        context=StoreContext(sessions=sessions, caches=caches),
        engine=engine,
        caches=caches,
        slots=EngineSlots(settings.policy_workers),
        recorder=DecisionRecorder(
            sessions,
            batch_seconds=settings.decision_flush_seconds,
            batch_size=settings.decision_batch_size,
        ),
        max_scan_findings=settings.max_scan_findings,
    )


@dataclass(frozen=True)
class VerifiedEvidence:
    """Steps 3 and 4 for one digest under one trust revision (what the evidence cache holds)."""

    signatures: tuple[VerifiedSignature, ...]
    attestations: tuple[VerifiedSignature, ...]
    rejections: tuple[Rejection, ...]
    registry_scan: ScanSnapshot | None
    # The repositories that served the evidence (mirrors, a signature repository...).
    served_by: tuple[str, ...] = ()


@dataclass
class _Trace:
    """Per-step timings and what the pipeline was doing, for deadline messages."""

    started: float = field(default_factory=time.perf_counter)
    timings: dict[str, float] = field(default_factory=dict)
    doing: str = ""
    cache: str | None = None

    def mark(self, step: str, since: float) -> float:
        now = time.perf_counter()
        self.timings[step] = round((now - since) * 1000, 3)
        return now


async def decide(request: DecisionRequest, parts: DecisionParts, *, record: bool = True) -> Outcome:
    """Decide ``request`` (see the module doc) and queue its record; answers without
    waiting for the record's commit (only, when the database is slow, for room among the
    uncommitted: see ``app.enforce.records``). Raises InputError for an invalid image
    reference only; every other failure is an outcome, recorded unless ``record`` is
    False (admission records a whole review's outcomes as one event)."""
    outcome = await _decide(request, parts)
    if record and parts.recorder is not None:
        await parts.recorder.submit(outcome, wait=request.deadline.remaining())
    return outcome


async def decide_and_store(
    request: DecisionRequest, parts: DecisionParts, *, timeout: float = 10.0
) -> tuple[Outcome, int | None]:
    """``decide``, then wait until the record is committed: for callers that report
    where it is stored. The id is None when no recorder is configured."""
    outcome = await _decide(request, parts)
    if parts.recorder is None:
        return outcome, None
    future = await parts.recorder.submit(outcome, wait=timeout)
    return outcome, await asyncio.wait_for(asyncio.wrap_future(future), timeout)


async def _decide(request: DecisionRequest, parts: DecisionParts) -> Outcome:
    ref = ImageRef.parse(request.image)
    trace = _Trace()
    evaluated_at = dt.datetime.now(dt.UTC)
    digest: str | None = ref.digest
    policy_input: dict[str, object] = {}
    try:
        step = trace.started
        digest = await _resolve(ref, request.deadline, parts, trace)
        step = trace.mark("resolve", step)
        pinned = ref.with_digest(digest)
        # In memory once loaded (the refresher re-reads it); the first load reads the store.
        trust = parts.context.current
        if trust is None:
            trust = await asyncio.to_thread(parts.context.trust)
        authorities = trust.matching(ref.name)
        stored_scan = await _stored_scan(ref, digest, request.deadline, parts, trace)
        step = trace.mark("context", step)
        evidence = await _evidence(
            pinned,
            authorities,
            trust_revision=trust.revision,
            want_registry_scan=stored_scan is None,
            deadline=request.deadline,
            parts=parts,
            trace=trace,
        )
        step = trace.mark("evidence", step)
        scan = stored_scan or evidence.registry_scan
        memory = _Memory(request, digest, authorities, evidence, scan, parts)
        remembered = memory.recall()
        if remembered is not None:
            # The same facts as a decision still valid: its answer and the input it was made
            # on, without encoding the input again.
            trace.cache = "decision"
            answer, policy_input = remembered.answer, remembered.policy_input
            trace.mark("policy", step)
        else:
            encoded = _encode(ref, digest, authorities, evidence, scan, request, evaluated_at)
            policy_input = encoded.document
            step = trace.mark("input", step)
            answer = await _answer(encoded, request, parts, trace)
            trace.mark("policy", step)
            memory.keep(answer, policy_input)
        outcome = _outcome(
            request, ref, digest, answer.decision, trace, policy_input, answer=answer
        )
        return outcome.model_copy(
            update={"encoded_findings": scan.encoded_findings if scan is not None else None}
        )
    except InputError:
        raise
    except Exception as e:  # fail closed on anything, and still record the decision
        if not isinstance(e, Error):
            log.error("decision failed unexpectedly", extra={"image": str(ref), "error": repr(e)})
        return _failure_outcome(request, ref, digest, e, trace, policy_input)


async def input_for(
    request: DecisionRequest,
    parts: DecisionParts,
    *,
    offline: bool = False,
    offline_digest: str | None = None,
) -> dict[str, object]:
    """Steps 1 to 5 only: the policy input ``decide`` would decide ``request`` on, with
    the findings in full (``sealgate policy input``).

    With ``offline`` the registry is not read: no digest resolution (``offline_digest``
    may name it), no signatures or attestations, only the store's facts. Raises the
    step's Error when something cannot be read.
    """
    ref = ImageRef.parse(request.image)
    trace = _Trace()
    evaluated_at = dt.datetime.now(dt.UTC)
    trust = await asyncio.to_thread(parts.context.trust)
    authorities = trust.matching(ref.name)
    evidence = VerifiedEvidence((), (), (), None)
    if offline:
        digest = ref.digest or offline_digest
        stored = await _stored_scan(ref, digest, request.deadline, parts, trace) if digest else None
    else:
        digest = await _resolve(ref, request.deadline, parts, trace)
        stored = await _stored_scan(ref, digest, request.deadline, parts, trace)
        evidence = await _evidence(
            ref.with_digest(digest),
            authorities,
            trust_revision=trust.revision,
            want_registry_scan=stored is None,
            deadline=request.deadline,
            parts=parts,
            trace=trace,
        )
    scan = stored or evidence.registry_scan
    encoded = _encode(ref, digest, authorities, evidence, scan, request, evaluated_at)
    return dict(orjson.loads(encoded.encoded))


async def _resolve(ref: ImageRef, deadline: Deadline, parts: DecisionParts, trace: _Trace) -> str:
    """Step 1: the digest ``ref`` names (tag cache, negative cache, single flight)."""
    if ref.digest is not None:
        return ref.digest
    key = str(ref)
    cached = parts.caches.tags.get(key)
    if cached is not None:
        return cached
    _raise_remembered_failure(key, parts)
    trace.doing = f"registry {ref.registry} (resolving {ref.repository}:{ref.tag})"

    async def _fetch() -> str:
        return await parts.registry.resolve_digest(ref)

    digest = await _guarded(
        key, lambda: parts.caches.resolve_flight.run(key, _fetch), deadline, parts, trace
    )
    parts.caches.tags.put(key, digest)
    return digest


async def _stored_scan(
    ref: ImageRef, digest: str, deadline: Deadline, parts: DecisionParts, trace: _Trace
) -> ScanSnapshot | None:
    """Step 2's scan: from memory, else one store read in a worker thread."""
    remembered, snapshot = parts.context.remembered_scan(name=ref.name, digest=digest)
    if remembered:
        return snapshot
    trace.doing = "the store (reading the stored scan)"
    async with deadline.step("deadline.store", lambda: trace.doing):
        return await asyncio.to_thread(parts.context.stored_scan, name=ref.name, digest=digest)


async def _evidence(
    pinned: ImageRef,
    authorities: tuple[TrustAuthority, ...],
    *,
    trust_revision: str,
    want_registry_scan: bool,
    deadline: Deadline,
    parts: DecisionParts,
    trace: _Trace,
) -> VerifiedEvidence:
    """Steps 3 and 4, cached per (repository, digest, trust revision)."""
    assert pinned.digest is not None
    key = (pinned.name, pinned.digest, f"{trust_revision}:{int(want_registry_scan)}")
    cached = parts.caches.evidence.get(key)
    if isinstance(cached, VerifiedEvidence):
        trace.cache = "evidence"
        return cached
    failure_key = f"{pinned.name}@{pinned.digest}"
    _raise_remembered_failure(failure_key, parts)
    trace.doing = (
        f"registry {pinned.registry} (reading signatures and scans of {pinned.repository})"
    )

    async def _fetch() -> object:
        return await collect_and_verify(
            parts.registry,
            pinned,
            authorities,
            want_registry_scan=want_registry_scan,
            max_scan_findings=parts.max_scan_findings,
        )

    evidence = await _guarded(
        failure_key,
        lambda: parts.caches.evidence_flight.run(key, _fetch),
        deadline,
        parts,
        trace,
    )
    assert isinstance(evidence, VerifiedEvidence)
    # Evidence that verified nothing is kept only as long as a tag: a signature pushed by
    # another tool (cosign) must not wait for the evidence TTL to be seen.
    ttl = None if evidence.signatures else parts.caches.tags.ttl
    parts.caches.evidence.put(key, evidence, ttl=ttl)
    return evidence


async def collect_and_verify(
    registry: RegistryClient,
    pinned: ImageRef,
    authorities: tuple[TrustAuthority, ...],
    *,
    want_registry_scan: bool,
    max_scan_findings: int = MAX_SCAN_FINDINGS,
) -> VerifiedEvidence:
    """Steps 3 and 4 without caches: list referrers once, fetch signature candidates (and
    scan reports when no stored scan exists), verify against ``authorities``.

    Raises RegistryError when the registry cannot be read.
    """
    with served_from() as sources:
        found = await _collect_and_verify(
            registry,
            pinned,
            authorities,
            want_registry_scan=want_registry_scan,
            max_scan_findings=max_scan_findings,
        )
    return replace(found, served_by=tuple(sources))


async def _collect_and_verify(
    registry: RegistryClient,
    pinned: ImageRef,
    authorities: tuple[TrustAuthority, ...],
    *,
    want_registry_scan: bool,
    max_scan_findings: int,
) -> VerifiedEvidence:
    if not authorities and not want_registry_scan:
        # Nothing could verify and no scan is needed: read no (untrusted) evidence.
        return VerifiedEvidence((), (), (_no_authority(pinned),), None)
    listed = await registry.list_referrers(pinned)
    signatures: list[VerifiedSignature] = []
    rejections: list[Rejection] = []
    if authorities:
        assert pinned.digest is not None
        verify = functools.partial(
            verify_candidates, authorities=authorities, digest=pinned.digest, image_name=pinned.name
        )
        evidence = await evidence_from_referrers(registry, pinned, listed, legacy=False)
        verified, refused = await asyncio.to_thread(verify, evidence.candidates)
        signatures = list(verified)
        rejections = [*evidence.problems, *refused]
        if _unsigned_by_some(authorities, signatures):
            # The legacy ``.sig`` tag only when the referrers left an authority without an
            # image signature: a request fewer for images signed the OCI 1.1 way.
            legacy = await legacy_evidence(registry, pinned)
            if legacy.candidates or legacy.problems:
                verified, refused = await asyncio.to_thread(verify, legacy.candidates)
                signatures += verified
                rejections += [*legacy.problems, *refused]
    else:
        rejections = [_no_authority(pinned)]
    images = tuple(s for s in signatures if is_image_signature(s))
    attestations = tuple(s for s in signatures if not is_image_signature(s))
    registry_scan: ScanSnapshot | None = None
    if want_registry_scan:
        registry_scan = _attested_scan(attestations)
        if registry_scan is None:
            found = await scan_referrers(registry, pinned, listed, max_findings=max_scan_findings)
            if found:
                newest = max(found, key=lambda s: s.scanned_at)
                registry_scan = _snapshot(
                    newest.report, source=ScanSource.unsigned_referrer, at=newest.scanned_at
                )
    return VerifiedEvidence(images, attestations, tuple(rejections), registry_scan)


def _unsigned_by_some(
    authorities: tuple[TrustAuthority, ...], signatures: list[VerifiedSignature]
) -> bool:
    signed_by = {s.authority for s in signatures if is_image_signature(s)}
    return any(a.name not in signed_by for a in authorities)


def _no_authority(pinned: ImageRef) -> Rejection:
    return Rejection(
        source="trust", code="verify.no_authority", reason=f"no authority covers {pinned.name}"
    )


def _attested_scan(attestations: tuple[VerifiedSignature, ...]) -> ScanSnapshot | None:
    """The first verified vulnerability attestation that reads as a report."""
    for attestation in attestations:
        if attestation.predicate_type == VULN_PREDICATE_TYPE and attestation.predicate:
            try:
                report = report_from_vuln_predicate(attestation.predicate)
            except Error as e:
                log.warning("unreadable vulnerability attestation", extra={"error": e.message})
                continue
            return _snapshot(report, source=ScanSource.verified_attestation, at=None)
    return None


def _snapshot(report: ScanReport, *, source: ScanSource, at: dt.datetime | None) -> ScanSnapshot:
    scanned_at = report.scanned_at or at or dt.datetime.now(dt.UTC)
    return ScanSnapshot.build(
        scanner=report.scanner,
        format=report.format.value,
        scanned_at=scanned_at,
        source=source,
        vulnerabilities=[PolicyVulnerability.from_finding(f) for f in report.vulnerabilities],
    )


async def _guarded(
    failure_key: str,
    fetch: Callable[[], Awaitable[T]],
    deadline: Deadline,
    parts: DecisionParts,
    trace: _Trace,
) -> T:
    """Run a registry fetch within the deadline; remember a failure for a few seconds."""
    try:
        async with deadline.step("deadline.registry", lambda: trace.doing):
            return await fetch()
    except Error as e:
        if e.code.startswith(("registry.", "deadline.")):
            parts.caches.failures.put(failure_key, e)
        raise


def _raise_remembered_failure(key: str, parts: DecisionParts) -> None:
    remembered = parts.caches.failures.get(key)
    if isinstance(remembered, Error):
        raise type(remembered)(
            f"{remembered.message} (failed moments ago; retried after "
            f"{parts.caches.failures.ttl:g} s)",
            code=remembered.code,
        )


def _encode(
    ref: ImageRef,
    digest: str | None,
    authorities: tuple[TrustAuthority, ...],
    evidence: VerifiedEvidence,
    scan: ScanSnapshot | None,
    request: DecisionRequest,
    evaluated_at: dt.datetime,
) -> EncodedInput:
    """Step 5: the policy input, encoded with the scan's findings spliced in."""
    policy_input: PolicyInput = build_input(
        entrypoint=request.entrypoint,
        image=ImageFacts.from_reference(
            str(ref),
            digest=digest,
            served_by=(
                list(evidence.served_by)
                if any(source != ref.name for source in evidence.served_by)
                else None
            ),
        ),
        authorities=[a.name for a in authorities],
        signatures=[SignatureFacts.from_verified(s) for s in evidence.signatures],
        attestations=[
            AttestationFacts(
                authority=a.authority,
                predicate_type=a.predicate_type or "",
                predicate=a.predicate or {},
            )
            for a in evidence.attestations
        ],
        scan=scan.at(evaluated_at) if scan is not None else None,
        kubernetes=request.kubernetes,
        evaluated_at=evaluated_at,
    )
    return encode_input(policy_input, scan)


@dataclass(frozen=True)
class _CachedAnswer:
    answer: EngineAnswer
    valid_until_ns: int | None

    # An estimate of the entry's footprint, and of each denial or warning it holds.
    base_size = 512

    def valid(self, now_ns: int) -> bool:
        return self.valid_until_ns is None or now_ns < self.valid_until_ns


def _keep_answer(parts: DecisionParts, key: str, entry: _CachedAnswer) -> None:
    """Cache ``entry`` until the earliest of the cache's TTL and the policy's
    ``valid_until``."""
    until = entry.valid_until_ns
    ttl = None if until is None else max(0.0, (until - time.time_ns()) / 1e9)
    decision = entry.answer.decision
    size = entry.base_size + 256 * (len(decision.deny) + len(decision.warn))
    parts.caches.decisions.put(key, entry, ttl=ttl, size=size)


async def _answer(
    encoded: EncodedInput, request: DecisionRequest, parts: DecisionParts, trace: _Trace
) -> EngineAnswer:
    """Step 6: the engine's answer, from the decision cache while it is valid."""
    engine = parts.engine()
    revision = engine.revision
    key = f"{request.entrypoint.value}:{revision}:{encoded.cache_key}"
    now_ns = time.time_ns()
    cached = parts.caches.decisions.get(key)
    if isinstance(cached, _CachedAnswer) and cached.valid(now_ns):
        trace.cache = "decision"
        return cached.answer
    answer = await parts.slots.run(
        lambda: engine.answer(request.entrypoint, encoded.encoded),
        deadline=request.deadline,
        what=request.image,
    )
    if answer.revision == revision:
        _keep_answer(parts, key, _CachedAnswer(answer, _valid_until_ns(answer.decision)))
    return answer


@dataclass(frozen=True)
class _Facts:
    """What a decision is made on, by identity: the evidence and scan objects the caches
    hand out stay the same until something about them changes (a new signature, scan or
    authority replaces them), so ``is`` proves the facts unchanged without encoding the
    input to compare it. The evaluation time and scan age are left out, as in
    ``_answer``'s key: the policy's ``valid_until`` bounds them."""

    evidence: VerifiedEvidence
    scan: ScanSnapshot | None
    authorities: tuple[str, ...]
    kubernetes: KubernetesContext | None

    def same_as(self, other: _Facts) -> bool:
        return (
            self.evidence is other.evidence
            and self.scan is other.scan
            and self.authorities == other.authorities
            and self.kubernetes == other.kubernetes
        )


@dataclass(frozen=True)
class _Remembered(_CachedAnswer):
    """A cached answer with the facts it was made on and the input they made."""

    facts: _Facts
    policy_input: dict[str, object]

    base_size = 1024


class _Memory:
    """Decisions remembered with their facts, in the decision cache beside ``_answer``'s
    entries (its keys start with the entry point, these with ``facts:``)."""

    def __init__(
        self,
        request: DecisionRequest,
        digest: str,
        authorities: tuple[TrustAuthority, ...],
        evidence: VerifiedEvidence,
        scan: ScanSnapshot | None,
        parts: DecisionParts,
    ) -> None:
        self._request = request
        self._digest = digest
        self._parts = parts
        self._facts = _Facts(
            evidence=evidence,
            scan=scan,
            authorities=tuple(a.name for a in authorities),
            kubernetes=request.kubernetes,
        )

    def _key(self, revision: str | None) -> str:
        request = self._request
        return f"facts:{request.entrypoint.value}:{revision}:{self._digest}:{request.image}"

    def recall(self) -> _Remembered | None:
        """The decision remembered for exactly these facts, while it is valid."""
        cache = self._parts.caches.decisions
        # Not counted: a miss here is looked up again by content (``_answer``), which counts.
        entry = cache.get(self._key(self._parts.engine().revision), counted=False)
        if not isinstance(entry, _Remembered) or not entry.facts.same_as(self._facts):
            return None
        if not entry.valid(time.time_ns()):
            return None
        cache.hit()
        return entry

    def keep(self, answer: EngineAnswer, policy_input: dict[str, object]) -> None:
        if answer.revision is None or answer.revision != self._parts.engine().revision:
            return  # decided by an engine already replaced
        entry = _Remembered(answer, _valid_until_ns(answer.decision), self._facts, policy_input)
        _keep_answer(self._parts, self._key(answer.revision), entry)


def _valid_until_ns(decision: PolicyDecision) -> int | None:
    extra = decision.model_extra or {}
    value = extra.get("valid_until_ns")
    return value if isinstance(value, int) else None


def _outcome(
    request: DecisionRequest,
    ref: ImageRef | str,
    digest: str | None,
    decision: PolicyDecision,
    trace: _Trace,
    policy_input: dict[str, object],
    *,
    answer: EngineAnswer | None = None,
    failure: str | None = None,
) -> Outcome:
    """The frozen outcome of ``request``: the policy's ``answer``, or a ``failure``."""
    trace.timings["total"] = round((time.perf_counter() - trace.started) * 1000, 3)
    image_facts = policy_input.get("image")
    served_by = image_facts.get("served_by") if isinstance(image_facts, dict) else None
    return Outcome(
        image=str(ref),
        digest=digest,
        entrypoint=request.entrypoint,
        allowed=decision.allow,
        decision=decision,
        codes=(failure,) if failure else tuple(decision.codes),
        failure=failure,
        policy_version=answer.version if answer else None,
        policy_revision=answer.revision if answer else None,
        actor=request.actor,
        request_id=request.request_id,
        source=request.source,
        dry_run=request.dry_run,
        timings_ms=trace.timings,
        cache=trace.cache,
        input=policy_input,
        served_by=tuple(served_by) if isinstance(served_by, list) else None,
    )


# What a person can do about each kind of failure.
_FIXES = {
    "deadline.registry": "check that the registry answers quickly; the decision is tried again "
    "on the next request",
    "deadline.store": "check that Sealgate's database answers quickly",
    "deadline.policy": "check the active policy for slow rules, or give decisions more time",
    "policy.busy": "give Sealgate more policy workers (SEALGATE_POLICY_WORKERS) or replicas",
    "registry.": "check that the registry is reachable and that Sealgate's credentials for it "
    "are valid",
    "evidence.": "re-upload the scan or re-sign the image, then retry",
    "policy.": "check the active policy (sealgate policy check, sealgate policy test)",
    "store.": "check that Sealgate's database is reachable",
}


def _fix_for(code: str) -> str:
    for prefix, fix in _FIXES.items():
        if code.startswith(prefix):
            return fix
    return "retry; if it persists, see Sealgate's logs for the request id"


def unparseable_outcome(request: DecisionRequest, error: InputError) -> Outcome:
    """The outcome of an image string that is not a reference: it can never be pulled or
    checked, so it is denied whatever the failure mode."""
    finding = Finding(
        code=error.code,
        message=f"image {request.image!r} is not a valid reference: {error.message}",
        fix="name the image as REGISTRY/REPOSITORY[:TAG][@DIGEST]",
        image=request.image,
    )
    decision = PolicyDecision(allow=False, deny=[finding])
    policy_input = _minimal_input(request)
    return _outcome(
        request, request.image, None, decision, _Trace(), policy_input, failure=error.code
    )


def _minimal_input(request: DecisionRequest, image: ImageFacts | None = None) -> dict[str, object]:
    """What is recorded as the input of an outcome decided before an input was built: the
    entry point, the image when its reference parses, and who asked from where (the audit
    record's namespace and object come from the Kubernetes context)."""
    document: dict[str, object] = {"version": 1, "entrypoint": request.entrypoint.value}
    if image is not None:
        document["image"] = image.model_dump(mode="json", exclude_none=True)
    if request.kubernetes is not None:
        document["kubernetes"] = request.kubernetes.model_dump(mode="json", exclude_none=True)
    return document


def _failure_outcome(
    request: DecisionRequest,
    ref: ImageRef,
    digest: str | None,
    error: Exception,
    trace: _Trace,
    policy_input: dict[str, object],
) -> Outcome:
    """A decision that could not be made: denied (closed) or allowed with a warning (open)."""
    if isinstance(error, Error):
        code, reason = error.code, error.message
    else:
        code, reason = "internal", f"unexpected {type(error).__name__}"
    closed = request.failure_mode is FailureMode.closed
    verdict = "denied" if closed else "allowed without a decision (failure mode open)"
    finding = Finding(
        code=code,
        message=f"could not be checked, so it is {verdict}: {reason}",
        fix=_fix_for(code),
        image=str(ref),
    )
    decision = (
        PolicyDecision(allow=False, deny=[finding])
        if closed
        else PolicyDecision(allow=True, warn=[finding])
    )
    if not policy_input:
        policy_input = _minimal_input(request, ImageFacts.from_reference(str(ref), digest=digest))
    return _outcome(request, ref, digest, decision, trace, policy_input, failure=code)


__all__ = [
    "DecisionParts",
    "VerifiedEvidence",
    "collect_and_verify",
    "decide",
    "decide_and_store",
    "unparseable_outcome",
]
