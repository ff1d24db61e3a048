"""The AdmissionReview answer: allowed or a 403 naming each denied image, warnings, a patch.

Its input is one ``ImageResult`` per distinct image of the review (what the decision pipeline
concluded, mapped onto this small model) plus warnings about the review as a whole. The
answer is built in the version the review asked for and echoes ``request.uid``, which the API
server checks.

Sizes follow what reaches a person through ``kubectl``:

- ``status.message`` lists one line per denial (image, containers, what is wrong, the rule's
  code and what would fix it) and stops at ``MAX_MESSAGE_CHARS`` with "... and N more
  denials"; the decision records keep them all.
- ``warnings``: the API server turns each into a ``Warning: 299`` header. Its warning recorder
  (k8s.io/apiserver ``pkg/endpoints/filters/warning.go``: ``truncateItemRunes = 256``,
  ``truncateAtTotalRunes = 4 * 1024``) cuts each warning to 256 runes once the total passes
  4096, and then drops the rest; the Kubernetes docs (extensible admission controllers,
  "Response" > warnings) say the same and advise 120 characters. So each warning here is at
  most ``MAX_WARNING_CHARS`` characters (Python characters are code points, like Go runes)
  and all of them together at most ``MAX_WARNINGS_TOTAL_CHARS``, the last one saying how many
  were left out. Control characters become spaces (they cannot go in a header).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from app.k8s.patch import PATCH_TYPE, encode_patch
from app.k8s.review import REVIEW_KIND, AdmissionReview

MAX_WARNING_CHARS = 256
MAX_WARNINGS_TOTAL_CHARS = 4096
MAX_MESSAGE_CHARS = 3072
# One denial line at most: a long policy message must not crowd out the other images.
MAX_DENIAL_LINE_CHARS = 512
_ELLIPSIS = "…"
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]+")


@dataclass(frozen=True, slots=True)
class Reason:
    """Why an image is denied: the stable code of the rule or error, a message a person can
    act on, and what would fix it (None when nothing but a policy change would)."""

    code: str
    message: str
    fix: str | None = None


@dataclass(frozen=True, slots=True)
class ImageResult:
    """What was decided for one distinct image of a review.

    ``denials`` empty means allowed (warn and audit modes put their findings in ``warnings``
    instead); ``digest`` is the digest the decision was made on (the index digest for an
    index), used for pinning; ``containers`` names the containers that run the image.
    """

    image: str
    containers: tuple[str, ...] = ()
    denials: tuple[Reason, ...] = ()
    warnings: tuple[str, ...] = ()
    digest: str | None = None

    @property
    def allowed(self) -> bool:
        return not self.denials


def admission_response(
    review: AdmissionReview,
    *,
    results: Sequence[ImageResult],
    warnings: Sequence[str] = (),
    patch: Sequence[Mapping[str, str]] = (),
) -> dict[str, Any]:
    """The AdmissionReview to answer ``review`` with.

    Allowed when no result has a denial. A denial carries ``status.code`` 403 and the message
    of ``denial_message``. ``warnings`` (about the whole review) come before each image's
    own. ``patch`` (JSONPatch operations, see ``app.k8s.patch``) is sent only when the answer
    allows and is not empty; a validating webhook must pass none.
    """
    allowed = all(result.allowed for result in results)
    response: dict[str, Any] = {"uid": review.request.uid, "allowed": allowed}
    if not allowed:
        response["status"] = {
            "code": 403,
            "reason": "Forbidden",
            "message": denial_message(results),
        }
    texts = warning_texts(results, warnings=warnings)
    if texts:
        response["warnings"] = texts
    if allowed and patch:
        response["patchType"] = PATCH_TYPE
        response["patch"] = encode_patch(patch)
    return {"apiVersion": review.answer_version.value, "kind": REVIEW_KIND, "response": response}


def denial_message(results: Sequence[ImageResult]) -> str:
    """One line per denial, ``image (container a, b): message [code]; fix: ...``, cut to
    ``MAX_MESSAGE_CHARS`` with a last line saying how many denials were left out."""
    lines = [
        _clip(_denial_line(result, reason), MAX_DENIAL_LINE_CHARS)
        for result in results
        for reason in result.denials
    ]
    return _fit(lines, limit=MAX_MESSAGE_CHARS, joiner="\n", more="denials")


def warning_texts(results: Sequence[ImageResult], *, warnings: Sequence[str] = ()) -> list[str]:
    """The ``warnings`` list: the review's, then each image's prefixed with the image, each
    cleaned of control characters and cut to ``MAX_WARNING_CHARS``, without repeats, and
    cut in number so that all fit in ``MAX_WARNINGS_TOTAL_CHARS``."""
    texts = [_clip(_one_line(text), MAX_WARNING_CHARS) for text in _all_warnings(results, warnings)]
    kept = list(dict.fromkeys(text for text in texts if text))
    total, fitted = 0, []
    for index, text in enumerate(kept):
        left = len(kept) - index - 1
        # Room for this one and, if others follow, the line that counts them.
        reserve = len(_more(left, "warnings")) if left else 0
        if total + len(text) + reserve > MAX_WARNINGS_TOTAL_CHARS:
            fitted.append(_more(len(kept) - index, "warnings"))
            break
        fitted.append(text)
        total += len(text)
    return fitted


def _all_warnings(results: Sequence[ImageResult], review_warnings: Sequence[str]) -> Iterable[str]:
    yield from review_warnings
    for result in results:
        for text in result.warnings:
            yield f"{result.image}: {text}"


def _denial_line(result: ImageResult, reason: Reason) -> str:
    names = [name for name in result.containers if name]
    where = f" (container{'s' if len(names) > 1 else ''} {', '.join(names)})" if names else ""
    line = f"{result.image}{where}: {_one_line(reason.message)} [{reason.code}]"
    if reason.fix:
        line += f"; fix: {_one_line(reason.fix)}"
    return line


def _fit(lines: list[str], *, limit: int, joiner: str, more: str) -> str:
    kept: list[str] = []
    size = 0
    for index, line in enumerate(lines):
        left = len(lines) - index - 1
        reserve = len(joiner) + len(_more(left, more)) if left else 0
        added = len(line) + (len(joiner) if kept else 0)
        if size + added + reserve > limit:
            kept.append(_more(len(lines) - index, more))
            break
        kept.append(line)
        size += added
    return joiner.join(kept)


def _more(count: int, what: str) -> str:
    return f"... and {count} more {what if count != 1 else what.removesuffix('s')}"


def _one_line(text: str) -> str:
    # A lone surrogate cannot be sent as UTF-8: it becomes "?".
    text = text.encode("utf-8", "replace").decode("utf-8")
    return _CONTROL.sub(" ", text).strip()


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - len(_ELLIPSIS)] + _ELLIPSIS
