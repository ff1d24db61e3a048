"""Stored inputs: one row per distinct content, safe under concurrent writers."""

from __future__ import annotations

import json
import threading

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from app.audit import canonical
from app.audit.canonical import canonical_json, content_hash
from app.audit.inputs import load_input, store_input, store_input_value
from app.db.models import StoredInput
from app.db.session import session_scope

SAMPLE = {"image": {"name": "r/a", "digest": "sha256:" + "a" * 64}, "b": [1, "é", None, True]}


class TestCanonicalJson:
    def test_key_order_does_not_change_the_bytes(self) -> None:
        assert canonical_json({"b": 1, "a": {"d": 2, "c": 3}}) == b'{"a":{"c":3,"d":2},"b":1}'

    def test_the_standard_library_fallback_writes_the_same_bytes(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        fast = canonical_json(SAMPLE)
        monkeypatch.setattr(canonical, "orjson", None)
        assert canonical_json(SAMPLE) == fast

    def test_data_that_is_not_json_is_refused(self) -> None:
        with pytest.raises(TypeError):
            canonical_json({"when": object()})


class TestStoredInputs:
    def test_same_content_is_stored_once(self, audit_sessions: sessionmaker[Session]) -> None:
        with session_scope(audit_sessions) as session:
            first = store_input_value(session, SAMPLE)
            again = store_input(session, canonical_json(json.loads(json.dumps(SAMPLE))))
            other = store_input_value(session, {"other": 1})
        assert first == again == content_hash(canonical_json(SAMPLE))
        assert other != first
        with session_scope(audit_sessions) as session:
            assert session.scalar(select(func.count()).select_from(StoredInput)) == 2
            assert load_input(session, first) == SAMPLE

    def test_unknown_or_malformed_names_load_nothing(
        self, audit_sessions: sessionmaker[Session]
    ) -> None:
        with session_scope(audit_sessions) as session:
            assert load_input(session, "sha256:" + "0" * 64) is None
            assert load_input(session, "'; DROP TABLE stored_inputs; --") is None

    def test_two_writers_of_one_content_both_succeed(
        self, audit_sessions: sessionmaker[Session]
    ) -> None:
        body = canonical_json(SAMPLE)
        errors: list[BaseException] = []
        first = audit_sessions()
        store_input(first, body)  # uncommitted: the second writer must wait, then do nothing

        def second() -> None:
            try:
                with session_scope(audit_sessions) as session:
                    store_input(session, body)
            except BaseException as e:
                errors.append(e)

        thread = threading.Thread(target=second)
        thread.start()
        thread.join(0.3)
        first.commit()
        first.close()
        thread.join(30)
        assert not thread.is_alive()
        assert errors == []
        with session_scope(audit_sessions) as session:
            assert session.scalar(select(func.count()).select_from(StoredInput)) == 1
