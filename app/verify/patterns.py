"""Identity patterns: the regular expressions that say which certificate subjects and OIDC
issuers may have signed.

They come from callers (``POST /v1/verify``, ``sealgate verify``) and from stored
authorities, so they are matched with RE2 (the ``google-re2`` binding): matching takes
time linear in the pattern and the value, and a pattern like ``h(.+)+#`` cannot hold the
interpreter for seconds the way Python's backtracking ``re`` does. RE2's syntax is the one
Go's ``regexp`` package reads, which is what cosign and policy-controller compile
``--certificate-identity-regexp`` with, so a user's pattern means the same thing here;
patterns RE2 refuses (back-references, look-arounds) are refused with the pattern named.

One difference from cosign is kept on purpose: cosign applies the pattern with
``MatchString``, an unanchored search, so ``https://github.com/acme/`` also accepts
``https://evil.example/?https://github.com/acme/``. Sealgate requires the pattern to match
the whole value (as if written ``^(?:...)$``); anchored cosign patterns mean the same in both.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import re2

from app.errors import InputError
from app.limits import MAX_PATTERN_CHARS

_OPTIONS = re2.Options()
_OPTIONS.log_errors = False  # the refusal is reported to the caller, not to stderr


@dataclass(frozen=True)
class IdentityPattern:
    """A compiled identity pattern; ``matches`` is a whole-value RE2 match."""

    text: str
    _regex: Any  # re2._Regexp; the binding ships no type information

    def matches(self, value: str) -> bool:
        return self._regex.fullmatch(value) is not None


def compile_identity_pattern(pattern: str, *, what: str) -> IdentityPattern:
    """Compile ``pattern`` (``what`` names it in messages, e.g. "certificate identity regexp").

    Raises ``InputError`` (code ``input.invalid_pattern``, 400) when the pattern is longer
    than ``MAX_PATTERN_CHARS`` or is not valid RE2 syntax, naming the pattern.
    """
    if len(pattern) > MAX_PATTERN_CHARS:
        raise InputError(
            f"{what} {pattern[:64]!r}... is {len(pattern)} characters long; the limit is "
            f"{MAX_PATTERN_CHARS}",
            code="input.invalid_pattern",
        )
    return _compile(pattern, what)


@lru_cache(maxsize=256)
def _compile(pattern: str, what: str) -> IdentityPattern:
    try:
        regex = re2.compile(pattern, options=_OPTIONS)
    except re2.error as e:
        raw = e.args[0] if e.args else e
        reason = raw.decode(errors="replace") if isinstance(raw, bytes) else str(raw)
        raise InputError(
            f"{what} {pattern!r} is not a valid regex in RE2 syntax (the syntax cosign's Go "
            f"regexp reads): {reason}",
            code="input.invalid_pattern",
        ) from e
    return IdentityPattern(text=pattern, _regex=regex)
