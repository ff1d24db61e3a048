"""``POST /admission/validate`` and ``POST /admission/mutate``: the Kubernetes webhooks.

The API server posts an ``admission.k8s.io/v1`` (or ``v1beta1``) AdmissionReview, or tools
post a bare ``request``; the answer is an AdmissionReview in the version asked, echoing
``request.uid`` (see ``app.enforce.admission``). Bad input (not JSON, another kind or
version, no request) is a 400 naming what is wrong, a body over 3 MiB a 413; the API
server then applies the webhook's ``failurePolicy``.

The API server authenticates Sealgate by its serving certificate; these endpoints take no
token (as with policy-controller and Kyverno). Restrict who can reach them with a
NetworkPolicy, or serve them on a port only the API server reaches.
"""

from __future__ import annotations

import time
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from app.api.deps import ServicesDep
from app.enforce.admission import AdmissionAnswer, AdmissionSettings, admit
from app.k8s.review import AdmissionReview
from app.limits import MAX_REVIEW_BYTES
from app.observability import Metrics, request_id_var

router = APIRouter(prefix="/admission", tags=["admission"])

_REVIEW_BODY = {
    "content": {"application/json": {"schema": {"type": "object"}}},
    "description": "An admission.k8s.io/v1 or v1beta1 AdmissionReview, or a bare request.",
    "required": True,
}


async def _review(request: Request) -> AdmissionReview:
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_REVIEW_BYTES:
            break  # from_json names the limit
    return AdmissionReview.from_json(bytes(body))


async def _answer(request: Request, services: ServicesDep, *, mutate: bool) -> JSONResponse:
    started = time.perf_counter()
    settings = services.settings
    admission = AdmissionSettings(
        budget=settings.admission_budget,
        failure_mode=settings.failure_mode,
        recheck_unchanged=settings.admission_recheck_unchanged,
    )
    deadline = admission.deadline()  # from the moment the request arrived
    review = await _review(request)
    answer = await admit(
        review,
        services.decisions,
        settings=admission,
        mutate=mutate,
        request_id=request_id_var.get(),
        deadline=deadline,
    )
    metrics: Metrics | None = getattr(request.app.state, "metrics", None)
    if metrics is not None:
        metrics.observe_admission(answer, seconds=time.perf_counter() - started, mutate=mutate)
    return JSONResponse(answer.review)


@router.post(
    "/validate",
    summary="Validate the images of a pod-bearing object (Kubernetes webhook)",
    openapi_extra={"requestBody": _REVIEW_BODY},
)
async def validate(request: Request, services: ServicesDep) -> Any:
    return await _answer(request, services, mutate=False)


@router.post(
    "/mutate",
    summary="Pin image tags to the digests decided on (Kubernetes webhook)",
    openapi_extra={"requestBody": _REVIEW_BODY},
)
async def mutate(request: Request, services: ServicesDep) -> Any:
    return await _answer(request, services, mutate=True)


__all__ = ["AdmissionAnswer", "router"]
