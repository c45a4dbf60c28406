"""Every error a user can cause or meet, in one hierarchy.

Each message is a full sentence naming the offending value and the fix, so the
CLI can print ``str(exc)`` on one line and exit 1. Secrets never go into a
message: callers pass the *name* of an environment variable, never its value.
"""

from __future__ import annotations

from trigger.text import escaped


class TriggerError(Exception):
    """Base class: a problem we can explain to the user in one line."""


class ConfigError(TriggerError):
    """The configuration file or an override has a bad value."""

    def __init__(self, key: str, value: object, fix: str) -> None:
        self.key = key
        self.value = value
        self.fix = fix
        shown = _short(value)
        # Keys come from the file too (a table's own keys): the CLI prints one line.
        super().__init__(escaped(f"config {key} = {shown}: {fix}"))

    def __reduce__(self) -> tuple[type[ConfigError], tuple[str, object, str]]:
        return (type(self), (self.key, self.value, self.fix))


class TemplateError(TriggerError):
    """A template refers to something it may not, or cannot be rendered."""


class UnknownTriggerError(TriggerError):
    def __init__(self, name: str, known: list[str]) -> None:
        self.name = name
        self.known = known
        listing = ", ".join(sorted(known)) or "none are configured"
        super().__init__(f"no trigger named {name!r}; configured triggers: {listing}")


class BadParameterError(TriggerError):
    """A ``fire --param`` that the trigger does not declare in ``inputs``."""


class BranchError(TriggerError):
    """A Bauplan branch name that we refuse to write to."""


class EnqueueUnavailableError(TriggerError):
    """The system database could not take the enqueue; the sender should retry."""


class BauplanFailure(TriggerError):
    """A Bauplan SDK error, translated. ``retryable`` drives DBOS step retries."""

    def __init__(self, message: str, *, retryable: bool) -> None:
        self.retryable = retryable
        super().__init__(message)

    def __reduce__(self) -> tuple[object, ...]:
        # DBOS pickles step errors; keep the retry decision across that.
        return (_make_failure, (str(self), self.retryable))


def _make_failure(message: str, retryable: bool) -> BauplanFailure:
    return BauplanFailure(message, retryable=retryable)


class RunFailed(TriggerError):
    """A Bauplan job that did not end in success: the run workflow ends in ERROR."""


class RunNotFoundError(TriggerError):
    def __init__(self, run_id: str) -> None:
        self.run_id = run_id
        super().__init__(f"no run with id {run_id!r}; list runs with `bauplan-trigger runs`")


def _short(value: object, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


class NotifierError(TriggerError):
    """A notifier cannot send: a missing environment variable, a bad URL or secret.

    Messages name the notifier and the variable, never the variable's value."""


class HookPayloadError(TriggerError):
    """A webhook body that is not what its sender documents (answered with 400)."""


class WorkspaceError(TriggerError):
    """The pushed commit could not be checked out for a run."""

    def __init__(self, message: str, *, retryable: bool = False) -> None:
        self.retryable = retryable
        super().__init__(message)

    def __reduce__(self) -> tuple[object, ...]:
        return (_make_workspace_error, (str(self), self.retryable))


def _make_workspace_error(message: str, retryable: bool) -> WorkspaceError:
    return WorkspaceError(message, retryable=retryable)


class RunControlError(TriggerError):
    """An operator action (retry, cancel, resume) that the run's state does not allow."""


class WatchDirError(TriggerError):
    """A ``[triggers.files]`` dir that cannot be watched."""

    def __init__(self, trigger: str, path: str, problem: str) -> None:
        self.trigger = trigger
        self.path = path
        self.problem = problem
        super().__init__(
            f"trigger {trigger!r}: watched dir {path!r} {problem}; create it or fix "
            f"[triggers.files] dir (relative paths are relative to the config file)"
        )

    def __reduce__(self) -> tuple[type[WatchDirError], tuple[str, str, str]]:
        return (type(self), (self.trigger, self.path, self.problem))


class FileGoneError(TriggerError):
    """The dropped file a run was for is no longer there (or was replaced) when it starts."""
