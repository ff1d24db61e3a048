"""Admission: one AdmissionReview in, one AdmissionResponse out, within the review's budget.

``admit`` is what ``POST /admission/validate`` and ``/admission/mutate`` call:

1. DELETE and CONNECT, kinds that carry no pod template and objects without images are
   allowed at once;
2. each distinct image of the object (containers, init and ephemeral containers) is
   decided by the pipeline at the ``admission`` entry point, all of them concurrently and
   under the review's one deadline (``SEALGATE_ADMISSION_BUDGET``), with the Kubernetes
   context in the policy input;
3. on UPDATE, an image already in ``oldObject`` keeps running whatever is published
   about it meanwhile: its denials are reported as warnings (so a scale, a label change or
   a rollback is never refused after a CVE appears) unless
   ``SEALGATE_ADMISSION_RECHECK_UNCHANGED`` asks for them to be enforced;
4. the answer names each denied image, the rule and the fix; for mutation, tags are
   pinned to the digests decided on, and only when the review is allowed, so the mutating
   webhook never lets through what the validating one would refuse.

A decision that cannot be made in time (registry dead, hanging or slow) follows
``SEALGATE_FAILURE_MODE``: a denial naming the registry and the cause, or an allow with a
warning; either way it is recorded with its code.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

from app.enforce.deadline import Deadline
from app.enforce.outcome import Actor, DecisionRequest, Outcome
from app.enforce.pipeline import DecisionParts, decide, unparseable_outcome
from app.enforce.records import ReviewRecord
from app.errors import InputError
from app.failure_mode import FailureMode
from app.k8s.images import (
    ContainerImage,
    containers_of,
    distinct_images,
    is_pod_bearing,
    request_images,
    unchanged_images,
)
from app.k8s.patch import is_pinned, pin_images
from app.k8s.response import ImageResult, Reason, admission_response
from app.k8s.review import AdmissionRequest, AdmissionReview, Operation
from app.policy.decision import Finding
from app.policy.input import ContainerFacts, Entrypoint, KubernetesContext

# Of a review's budget, what is kept for answering once the decisions are made (building
# and sending the response, a loaded machine's scheduling): at most this, or a tenth.
ANSWER_RESERVE_SECONDS = 0.25


@dataclass(frozen=True)
class AdmissionSettings:
    """How reviews are decided: the budget of a whole review, what a failure becomes, and
    whether unchanged images on UPDATE are enforced."""

    budget: float = 3.0
    failure_mode: FailureMode = FailureMode.closed
    recheck_unchanged: bool = False

    def deadline(self) -> Deadline:
        """The deadline of a review's decisions, started now: the budget less the reserve
        for answering, so the whole answer leaves within the budget."""
        return Deadline(self.budget - min(ANSWER_RESERVE_SECONDS, self.budget / 10))


@dataclass(frozen=True)
class AdmissionAnswer:
    """The AdmissionReview to send back and the outcome of each image decided."""

    review: dict[str, object]
    outcomes: tuple[Outcome, ...]
    kind: str
    request_id: str | None = None

    @property
    def allowed(self) -> bool:
        response = self.review["response"]
        assert isinstance(response, dict)
        return bool(response["allowed"])


async def admit(
    review: AdmissionReview,
    parts: DecisionParts,
    *,
    settings: AdmissionSettings,
    mutate: bool = False,
    request_id: str | None = None,
    deadline: Deadline | None = None,
) -> AdmissionAnswer:
    """Decide ``review`` (see the module doc) by ``deadline`` (``settings.deadline()`` from
    now when not given: give the one started when the request arrived). Raises nothing for
    a parsed review: every image's failure is an outcome."""
    request = review.request
    kind = request.kind.kind
    if not _carries_images(request):
        return AdmissionAnswer(admission_response(review, results=()), (), kind, request_id)
    entries = request_images(request)
    images = distinct_images(entries)
    if not images:
        return AdmissionAnswer(admission_response(review, results=()), (), kind, request_id)
    started = time.perf_counter()
    unchanged = unchanged_images(request) if request.operation is Operation.UPDATE else frozenset()
    deadline = deadline or settings.deadline()
    outcomes = await asyncio.gather(
        *(
            _decide_image(
                image,
                entries,
                request,
                parts,
                deadline=deadline,
                settings=settings,
                unchanged=image in unchanged,
                request_id=request_id,
            )
            for image in images
        )
    )
    decided = dict(zip(images, outcomes, strict=True))
    # An unchanged image's denials are answered as warnings unless asked to be enforced.
    warned_only = set() if settings.recheck_unchanged else unchanged
    results = [
        _result(image, outcome, entries, enforce=image not in warned_only)
        for image, outcome in decided.items()
    ]
    patch = _pins(entries, decided) if mutate else []
    answer = admission_response(review, results=results, patch=patch)
    response = answer["response"]
    assert isinstance(response, dict)
    if parts.recorder is not None:
        record = ReviewRecord(
            outcomes=tuple(outcomes),
            allowed=bool(response["allowed"]),
            uid=request.uid,
            operation=request.operation.value,
            webhook="mutate" if mutate else "validate",
            namespace=request.namespace,
            object=_object_name(request),
            actor=_actor(request),
            request_id=request_id,
            dry_run=request.dry_run,
            latency_ms=(time.perf_counter() - started) * 1000,
            warned=tuple(i for i, o in decided.items() if i in warned_only and o.decision.deny),
        )
        await parts.recorder.submit_review(record, wait=deadline.remaining())
    return AdmissionAnswer(answer, tuple(outcomes), kind, request_id)


def _object_name(request: AdmissionRequest) -> str:
    """``Kind/name`` (``Kind/generateName`` for an object not yet named)."""
    name = request.name or request.generate_name
    return f"{request.kind.kind}/{name}" if name else request.kind.kind


def _actor(request: AdmissionRequest) -> Actor:
    return Actor(kind="kubernetes", name=request.user.username or None)


def _carries_images(request: AdmissionRequest) -> bool:
    if request.operation in (Operation.DELETE, Operation.CONNECT):
        return False
    return request.object is not None and is_pod_bearing(
        request.kind, sub_resource=request.sub_resource
    )


async def _decide_image(
    image: str,
    entries: tuple[ContainerImage, ...],
    request: AdmissionRequest,
    parts: DecisionParts,
    *,
    deadline: Deadline,
    settings: AdmissionSettings,
    unchanged: bool,
    request_id: str | None,
) -> Outcome:
    context = KubernetesContext(
        namespace=request.namespace,
        kind=request.kind.kind,
        name=request.name,
        generate_name=request.generate_name if not request.name else None,
        operation=request.operation.value,
        user=request.user.username or None,
        groups=list(request.user.groups),
        dry_run=request.dry_run,
        containers=[
            ContainerFacts(name=e.container, type=e.type.value) for e in entries if e.image == image
        ],
        unchanged=unchanged,
    )
    decision_request = DecisionRequest(
        image=image,
        entrypoint=Entrypoint.admission,
        deadline=deadline,
        kubernetes=context,
        actor=_actor(request),
        request_id=request_id,
        source=request.uid,
        failure_mode=settings.failure_mode,
        dry_run=request.dry_run,
    )
    try:
        # Recorded with the whole review, as one event (``admit``).
        return await decide(decision_request, parts, record=False)
    except InputError as e:
        # An image string that is not a reference can never be pulled or checked.
        return unparseable_outcome(decision_request, e)


def _result(
    image: str, outcome: Outcome, entries: tuple[ContainerImage, ...], *, enforce: bool
) -> ImageResult:
    """The response's view of ``image`` (as the object writes it); an unchanged image's
    denials become warnings."""
    denials = tuple(_reason(f) for f in outcome.decision.deny)
    warnings = [_warning(f) for f in outcome.decision.warn]
    if denials and not enforce:
        warnings = [
            f"already running, so not refused (it would be for a new image): {_warning(f)}"
            for f in outcome.decision.deny
        ] + warnings
        denials = ()
    return ImageResult(
        image=image,
        containers=containers_of(image, entries),
        denials=denials,
        warnings=tuple(warnings),
        digest=outcome.digest,
    )


def _reason(finding: Finding) -> Reason:
    return Reason(code=finding.code, message=finding.message, fix=finding.fix)


def _warning(finding: Finding) -> str:
    # The code first: a warning is cut at 256 characters and the code must survive.
    return f"[{finding.code}] {finding.message}"


def _pins(entries: tuple[ContainerImage, ...], decided: dict[str, Outcome]) -> list[dict[str, str]]:
    """JSONPatch operations pinning each tag to the digest its decision was made on."""
    digests = {
        image: o.digest
        for image, o in decided.items()
        if o.digest is not None and o.failure is None and not is_pinned(image)
    }
    return [dict(op) for op in pin_images(entries, digests=digests)]
