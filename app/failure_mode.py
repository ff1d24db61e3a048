"""What an enforcement point answers when a decision cannot be made in time.

Its own module, free of the settings machinery, so that the CLI can name it in an option
without importing pydantic at start-up.
"""

from __future__ import annotations

from enum import StrEnum


class FailureMode(StrEnum):
    """What an admission review answers when its budget runs out before a decision.

    ``closed`` denies (the default: an image that could not be checked does not run);
    ``open`` allows with a warning. The generated webhooks' ``failurePolicy`` follows it.
    """

    closed = "closed"
    open = "open"
