"""User-facing errors: message + context + hint, printed once by the CLI.

This module MUST NOT import anything from kagflow: every other module imports it.
"""

from __future__ import annotations


class KagflowError(Exception):
    """An expected failure the user can fix.

    ``message`` says what went wrong, ``context`` where (file, field, value, handle),
    ``hint`` what to do next, ideally a command to run.
    """

    def __init__(self, message: str, *, context: str | None = None, hint: str | None = None):
        super().__init__(message)
        self.message = message
        self.context = context
        self.hint = hint

    def render(self) -> str:
        lines = [f"error: {self.message}"]
        if self.context:
            for i, line in enumerate(str(self.context).splitlines()):
                lines.append(("  ╰─> " if i == 0 else "      ") + line)
        if self.hint:
            lines.append(f"hint: {self.hint}")
        return "\n".join(lines)

    def __str__(self) -> str:  # one line where a plain str is wanted (logs, pytest)
        parts = [self.message]
        if self.context:
            parts.append(f"[{self.context}]")
        if self.hint:
            parts.append(f"hint: {self.hint}")
        return " ".join(parts)


class ConfigError(KagflowError):
    """kagflow.toml is missing, malformed or inconsistent."""


class NamingError(KagflowError, ValueError):
    """A slug, title or handle breaks a Kaggle naming rule."""


class StateError(KagflowError):
    """A ``.kagflow/state-<target>.json`` is not what kagflow writes (cut short, edited, wrong types)."""


class MissingFileError(KagflowError):
    """A file or folder kagflow needs is not there."""


class HubError(KagflowError):
    """Kaggle (or the local Kaggle server) refused or failed a request.

    ``status`` is the HTTP code (None when there was no answer), ``server_message`` what the
    server said, ``handle`` the resource asked for and ``target`` where ("Kaggle" or the local
    Kaggle's URL). The message and hint come from one table, ``kagflow.hub.errors.REFUSALS``.
    """

    def __init__(self, message: str, *, status: int | None = None, context: str | None = None,
                 hint: str | None = None, server_message: str = "", handle: str = "", target: str = ""):
        super().__init__(message, context=context, hint=hint)
        self.status = status
        self.server_message = server_message
        self.handle = handle
        self.target = target


class NotFoundError(HubError):
    """The handle names nothing on the target."""


class PermissionDeniedError(HubError):
    """401/403: the credentials are wrong or do not own the handle."""


class RulesNotAcceptedError(PermissionDeniedError):
    """403 because the user has not accepted the competition's rules (downloads, mounts and submissions)."""


class RefusedError(HubError):
    """The server understood the request and said no (400/409/422, or an error in the answer body)."""


class NotSupportedError(HubError):
    """The target does not offer this call (the local Kaggle's 501/405): not an outage."""


class ServerError(HubError):
    """429/5xx that kept failing after the retries: a problem on the server's side."""


class UnreachableError(HubError):
    """No answer from the endpoint within the deadline."""


class KernelFailedError(HubError):
    """A kernel run ended in ERROR or was cancelled."""


class WheelsError(KagflowError):
    """A wheels dataset cannot be resolved, built or verified."""


class DataError(KagflowError):
    """An input CSV row or file does not follow the competition's schema."""


class QuotaError(KagflowError):
    """A push would run past the weekly accelerator quota that is left."""
