"""``POST /v1/decisions``: would this image be allowed here? Decide, record, explain.

The body names the image, the entry point (``sign``, ``push`` or ``admission``) and, for
admission, an optional namespace (the Kubernetes context is then a Pod CREATE there). The
answer is the decision (``allow``, ``deny``, ``warn``...), the exact policy input it was
made on and the id of its record. A denial is a normal answer (200), not an error: the
caller asked a question.

Who may call it: a token whose scopes allow ``verify`` on the image, like ``/v1/verify``.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from pydantic import ConfigDict, Field

from app.api.auth import PrincipalDep
from app.api.body import RequestBody
from app.api.deps import ServicesDep
from app.enforce.decide import evaluate_image
from app.oci.refs import ImageRef
from app.policy.input import Entrypoint, assumed_kubernetes

router = APIRouter(prefix="/v1", tags=["decisions"])


class DecisionRequest(RequestBody):
    model_config = ConfigDict(extra="forbid")

    image: str = Field(max_length=1024)
    entrypoint: Entrypoint = Entrypoint.admission
    namespace: str | None = Field(default=None, max_length=253)


@router.post("/decisions", summary="Decide whether an image passes the active policy")
async def decide(
    body: DecisionRequest, request: Request, services: ServicesDep, principal: PrincipalDep
) -> dict[str, Any]:
    image = ImageRef.parse(body.image)
    principal.authorize("verify", image.name)
    kubernetes = assumed_kubernetes(body.entrypoint, body.namespace)
    poller = getattr(request.app.state, "policy_poller", None)
    evaluation = await evaluate_image(
        services,
        image=str(image),
        entrypoint=body.entrypoint,
        kubernetes=kubernetes,
        policy_version=poller.version if poller is not None else None,
    )
    return evaluation.model_dump(mode="json")
