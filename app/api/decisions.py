"""``POST /v1/decisions``: would this image be allowed here? Decide, record, explain.

The body names the image, the entry point (``sign``, ``push`` or ``admission``) and, for
admission, an optional namespace (the Kubernetes context is then a Pod CREATE there). The
answer is the pipeline's outcome (decision, codes, policy version and revision, timings,
which cache answered) and the id of its record, answered once the record is committed.
The policy input is included only when asked (``?include_input=true``): with a large scan
it is big. A denial is a normal answer (200), not an error: the caller asked a question.

Who may call it: a token whose scopes allow ``verify`` on the image, like ``/v1/verify``.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from pydantic import ConfigDict, Field

from app.api.auth import PrincipalDep
from app.api.body import RequestBody
from app.api.deps import ServicesDep
from app.enforce.deadline import Deadline
from app.enforce.outcome import Actor, DecisionRequest
from app.enforce.pipeline import decide_and_store
from app.observability import request_id_var
from app.oci.refs import ImageRef
from app.policy.input import Entrypoint, assumed_kubernetes

router = APIRouter(prefix="/v1", tags=["decisions"])


class DecisionBody(RequestBody):
    model_config = ConfigDict(extra="forbid")

    image: str = Field(max_length=1024)
    entrypoint: Entrypoint = Entrypoint.admission
    namespace: str | None = Field(default=None, max_length=253)


@router.post("/decisions", summary="Decide whether an image passes the active policy")
async def decide(
    body: DecisionBody,
    services: ServicesDep,
    principal: PrincipalDep,
    include_input: bool = False,
) -> dict[str, Any]:
    image = ImageRef.parse(body.image)
    principal.authorize("verify", image.name)
    request = DecisionRequest(
        image=str(image),
        entrypoint=body.entrypoint,
        deadline=Deadline(services.settings.decision_deadline),
        kubernetes=assumed_kubernetes(body.entrypoint, body.namespace),
        actor=Actor(kind="token", name=principal.name),
        request_id=request_id_var.get(),
    )
    outcome, decision_id = await decide_and_store(request, services.decisions)
    answer: dict[str, Any] = outcome.model_dump(mode="json")
    answer["decision_id"] = decision_id
    if include_input:
        answer["input"] = outcome.full_input()
    return answer
