"""``python -m tests.hooks.cheap_worker``: the worker of ``sealgate worker`` (``run_worker``,
same claims, leases, actions and webhook) with the decision adapter injected: a fixed denial
without registry or policy work. For the durability test only, so that thousands of events
fit in its time on a loaded machine; ``sealgate worker`` itself is run by other tests."""

from __future__ import annotations

from app.cli.context import run_with_services
from app.hooks.verdicts import PushDecision, Reason
from app.hooks.worker import run_worker
from app.oci.refs import ImageRef
from app.services import Services


async def cheap_decide(
    services: Services, *, image: str, event_id: str, actor: str | None, deadline_seconds: float
) -> PushDecision:
    return PushDecision(
        allowed=False,
        digest=ImageRef.parse(image).digest,
        reasons=(Reason(code="test.cheap", message="decided by the durability test"),),
    )


async def _work(services: Services) -> None:
    await run_worker(services, decide=cheap_decide)


if __name__ == "__main__":
    run_with_services(_work)
