"""Handing OPA an input that is already JSON, without encoding it again.

``opa_bindings.OpaEngine.eval_document`` takes a Python object and runs ``json.dumps`` on
it for every call; with hundreds of findings that costs more than the rules. Sealgate
encodes each scan's findings once (orjson) and splices them into the small rest of the
input, so it has the bytes already. This adapter passes those bytes to the binding's
native call, under the binding's own evaluation lock, and parses the result as the binding
does. It uses the binding's private members, so it checks for them once and fails loudly
(``PolicyError``, and ``tests/policy/test_opa_native.py``) when an upgrade changes them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from app.errors import PolicyError

if TYPE_CHECKING:
    from opa_bindings import OpaEngine

# The binding version this adapter was written against (opa-golib-python-bindings).
SUPPORTED_BINDING = "0.4.4"
_PRIVATE_MEMBERS = ("_call", "_lib", "_eval_lock", "_eval_reset", "_eval_result", "_check_open")


def check_binding(opa: OpaEngine) -> None:
    """Raise PolicyError unless ``opa`` has the private members this adapter uses."""
    missing = [name for name in _PRIVATE_MEMBERS if not hasattr(opa, name)]
    if missing or not hasattr(opa._lib, "OpaEvalDocument"):
        raise PolicyError(
            "the installed opa-golib-python-bindings is not the version Sealgate's adapter "
            f"supports ({SUPPORTED_BINDING}); missing: {', '.join(missing) or 'OpaEvalDocument'}",
            code="policy.engine",
        )


def eval_document_encoded(opa: OpaEngine, path: str, encoded_input: bytes) -> Any:
    """The value of ``data.<path>`` for an input given as UTF-8 JSON bytes.

    Raises the binding's ``OpaUndefinedError`` when the document is undefined and
    ``OpaError`` when evaluation fails, exactly as ``eval_document`` does. The bytes must
    be valid JSON without a raw NUL (orjson never writes one).
    """
    from opa_bindings import OpaUndefinedError

    opa._check_open()
    with opa._eval_lock:
        opa._eval_reset()
        result = opa._eval_result(
            opa._call(opa._lib.OpaEvalDocument, path.encode(), encoded_input, 0, 0)
        )
    if not result or not result[0].get("expressions"):
        raise OpaUndefinedError(f"data.{path}")
    return result[0]["expressions"][0]["value"]
