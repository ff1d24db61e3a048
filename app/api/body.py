"""The base of every JSON request body: text in it must be real Unicode.

Pydantic refuses a lone UTF-16 surrogate in a plain ``str`` field but not inside every
container or ``SecretStr``, and such a string then fails deep inside the service as a 500
(see ``app.json_text``). So the check runs once here, over the whole body, before the
fields are validated.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, model_validator

from app.json_text import LONE_SURROGATE, find_unencodable


class RequestBody(BaseModel):
    """Derive request models from this instead of ``BaseModel``."""

    @model_validator(mode="before")
    @classmethod
    def _refuse_lone_surrogates(cls, data: Any) -> Any:
        # Where, not what: the value itself may be a private key or a password.
        where = find_unencodable(data)
        if where is not None:
            raise ValueError(
                f"{where[:200]!a} is not valid Unicode text (it holds {LONE_SURROGATE})"
            )
        return data
