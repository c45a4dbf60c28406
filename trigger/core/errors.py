"""Every error a user can cause or meet, in one hierarchy.

Each message is a full sentence naming the offending value and the fix, so the
CLI can print ``str(exc)`` on one line and exit 1. Secrets never go into a
message: callers pass the *name* of an environment variable, never its value,
and any secret value a message quotes anyway (an SDK error echoing one) is
redacted when the error is made, before DBOS records it or anyone logs it.
"""

from __future__ import annotations

from collections.abc import Callable

from trigger.core.secrets import redact
from trigger.core.text import escaped


class TriggerError(Exception):
    """Base class: a problem we can explain to the user in one line."""

    def __init__(self, *args: object) -> None:
        super().__init__(*(redact(a) if isinstance(a, str) else a for a in args))


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


class FireError(TriggerError):
    """A fire (CLI or API) that cannot become a run.

    ``field`` is the request field at fault. ``needs`` names the request fields that
    would make it a run (``param:NAME`` for a declared input), ``optional`` those that
    may help: the message says them in the API's words, and the CLI words the same
    error with its flags (``trigger.cli.fire``), so there is one error, not two."""

    def __init__(
        self,
        why: str,
        *,
        field: str,
        needs: tuple[str, ...] = (),
        optional: tuple[str, ...] = (),
    ) -> None:
        self.why = why
        self.field = field
        self.needs = needs
        self.optional = optional
        super().__init__(self.worded(_api_word, "pass ", " (and {})", " and "))

    def worded(self, word: Callable[[str], str], lead: str, extra: str, joiner: str) -> str:
        """The message with its fix in some surface's words: ``word`` names one field,
        ``lead`` comes before the needed ones and ``extra`` (``{}``) holds the optional."""
        if not self.needs:
            return self.why
        text = lead + joiner.join(word(n) for n in self.needs)
        if self.optional:
            text += extra.format(joiner.join(word(o) for o in self.optional))
        return f"{self.why}; {text}"

    def __reduce__(self) -> tuple[object, ...]:
        return (_make_fire_error, (self.why, self.field, self.needs, self.optional))


def _api_word(name: str) -> str:
    kind, _, input_name = name.partition(":")
    return f"params.{input_name}" if kind == "param" and input_name else name


def _make_fire_error(
    why: str, field: str, needs: tuple[str, ...], optional: tuple[str, ...]
) -> FireError:
    return FireError(why, field=field, needs=needs, optional=optional)


class BranchError(TriggerError):
    """A Bauplan branch name that we refuse to write to."""


class SystemDatabaseError(TriggerError):
    """The system database cannot be used: not set up yet, unreachable, or not ours."""


class SystemDatabaseMissingError(SystemDatabaseError):
    def __init__(self, where: str) -> None:
        self.where = where
        super().__init__(
            f"no system database at {where} yet: start `bauplan-trigger serve` with this "
            "config first (or point DBOS_SYSTEM_DATABASE_URL at the shared PostgreSQL)"
        )

    def __reduce__(self) -> tuple[type[SystemDatabaseMissingError], tuple[str]]:
        return (type(self), (self.where,))


class SystemDatabaseUnreachableError(SystemDatabaseError):
    """``reason`` is the driver's first line (host and port, never a password)."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(
            f"cannot reach the system database ({reason}); check that it is up and that "
            "DBOS_SYSTEM_DATABASE_URL (or, for SQLite, [service] state_dir) points at it"
        )

    def __reduce__(self) -> tuple[type[SystemDatabaseUnreachableError], tuple[str]]:
        return (type(self), (self.reason,))


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


class RunStillGoingError(TriggerError):
    """``fire --wait`` ran out of time; the run itself goes on. Exit code 3, so a script
    can tell "not over yet" from "failed"."""

    exit_code = 3

    def __init__(self, run_id: str, status: str, timeout: float) -> None:
        self.run_id = run_id
        super().__init__(
            f"run {run_id} is still {status} after {timeout:g}s (--timeout); it goes on: "
            f"follow it with `bauplan-trigger runs show {run_id}`"
        )


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


class RunRefused(BauplanFailure):
    """Bauplan answered a run submission with an error, so it started no job."""

    def __reduce__(self) -> tuple[object, ...]:
        return (_make_refused, (str(self), self.retryable))


def _make_refused(message: str, retryable: bool) -> RunRefused:
    return RunRefused(message, retryable=retryable)


class PublishConflict(TriggerError):
    """Bauplan refused a publish merge: the target moved or the merge conflicts. The run
    keeps its outcome; nobody retries the merge blindly."""


class SubmissionUnclear(BauplanFailure):
    """A run interrupted while submitting cannot tell which Bauplan job is its own.

    It neither adopts a job that may be another's nor submits a second one."""

    def __init__(self, message: str) -> None:
        super().__init__(message, retryable=False)

    def __reduce__(self) -> tuple[object, ...]:
        return (type(self), (str(self),))


class RehearsalFaultError(TriggerError):
    """A ``rehearsal fault`` that names no rehearsed method, step or SDK error."""


class UnknownHostError(TriggerError):
    """A request to the operator surface under a name that is not this service's (421)."""

    def __init__(self, host: str, listen: str) -> None:
        self.host = host
        super().__init__(
            f"Host {_short(host)} is not a name of this service (it listens on {listen}); "
            "if you reach it by that name, add the name to [service] allowed_hosts"
        )


class CrossSiteRequestError(TriggerError):
    """A state change sent by another site's web page (403)."""

    def __init__(self, evidence: str) -> None:
        self.evidence = evidence
        super().__init__(
            f"refused a request from another site's web page ({_short(evidence)}): "
            "runs are fired, retried and cancelled only by this service's own origin, "
            "scripts and the CLI"
        )


class UnsafeStateChangeError(TriggerError):
    """A state change a cross-site form could have sent (415 with a body, 403 without)."""

    def __init__(self, method: str, content_type: str | None) -> None:
        self.content_type = content_type
        if content_type is not None:
            problem = f"has a body of type {content_type or 'none'!r}"
        else:
            problem = "has no body and no X-Requested-By header"
        super().__init__(
            f"this {method} {problem}; send a JSON body with Content-Type: application/json, "
            "or, without a body, the header X-Requested-By: <your tool's name> "
            "(a cross-site form can send neither)"
        )


class TokenInUrlError(TriggerError):
    """The API token given in a URL where only the header is accepted (401)."""

    def __init__(self, path: str) -> None:
        self.path = path
        super().__init__(
            f"{_short(path)} does not take ?token= (URLs end up in proxy and access logs); "
            "send the token as the header Authorization: Bearer <token>"
        )


class TokenMismatchError(TriggerError):
    """No API token, or not the configured one (401). Never echoes what was sent."""

    def __init__(self) -> None:
        super().__init__("missing or wrong bearer token (send Authorization: Bearer <token>)")


class ExecutorHeldError(TriggerError):
    """Another live process holds this executor id; launching would re-run its steps."""

    def __init__(self, executor_id: str, holder: str) -> None:
        self.executor_id = executor_id
        self.holder = holder
        super().__init__(
            f"executor id {executor_id!r} is held by a live process ({holder}); a second "
            "process with the same host, --role and [service] name would re-run its "
            "in-flight runs: stop that process first, or give this one its own "
            "[service] name (BAUPLAN_TRIGGER_SERVICE__NAME) or --role"
        )

    def __reduce__(self) -> tuple[type[ExecutorHeldError], tuple[str, str]]:
        return (type(self), (self.executor_id, self.holder))
