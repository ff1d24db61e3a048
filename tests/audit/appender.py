"""A separate OS process appending to the audit chain (run by ``test_concurrency``)."""

from __future__ import annotations

import random
from typing import Any

from app.audit.chain import append_audit
from app.db.session import make_engine, make_session_factory, session_scope
from tests.audit.samples import decision


def append_records(url: str, label: str, count: int, together: Any) -> None:
    """Append ``count`` records in batches of 1 to 5, each batch its own transaction, with
    ``label`` as their source prefix. After the first batch, wait at the ``together``
    barrier: however unequal the start-up, both processes then append at the same time."""
    engine = make_engine(url)
    sessions = make_session_factory(engine)
    rng = random.Random(label)
    written = 0
    while written < count:
        size = min(rng.randint(1, 5), count - written)
        entries = [
            decision(written + i).model_copy(update={"source": f"{label}-{written + i}"})
            for i in range(size)
        ]
        with session_scope(sessions) as session:
            append_audit(session, entries)
        if written == 0:
            together.wait(60)
        written += size
    engine.dispose()
