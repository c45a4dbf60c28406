"""How rehearsal mode fails like Bauplan, and like a crashing worker.

The rehearsal client refuses what the installed SDK's signatures refuse and
raises the SDK's own exceptions. Faults armed in the ledger (``bauplan-trigger
rehearsal fault``) make the next calls of an SDK method raise one of those
exceptions, or, with ``EXIT_AFTER``, do their work and then kill the calling
process: the instant after Bauplan accepted a job, before the worker recorded
it. A fault on ``step:NAME`` kills the worker right after the run workflow's
step ``NAME`` is checkpointed (see ``workflows.crashpoint``), so every crash a
production worker can suffer can be rehearsed before going live.
"""

from __future__ import annotations

import inspect
import os
import threading
from collections.abc import Callable
from functools import wraps
from typing import Any, Protocol, TypeVar

import bauplan
import bauplan.exceptions

from trigger.core.errors import RehearsalFaultError

EXIT_AFTER = "EXIT_AFTER"
EXIT_CODE = 137  # what a shell reports for a process killed by SIGKILL
STEP_PREFIX = "step:"

# The SDK methods the rehearsal client implements, each of which can be armed.
METHODS = (
    "info",
    "has_branch",
    "create_branch",
    "run",
    "get_job",
    "get_job_logs",
    "cancel_job",
    "get_jobs",
    "get_job_context",
    "get_job_contexts",
    "get_branch",
    "merge_branch",
    "get_commits",
    "delete_branch",
)

# The run workflow's checkpoints, in the order a run meets them. ``move_file.marker``
# is inside the ``move_file`` step: after the marker moved, before the file does.
# Notification steps are ``notify <kind>:<name> <status>``.
STEPS = (
    "launch",
    "start",
    "check_file",
    "prepare_branch",
    "prepare_code",
    "submit",
    "wait",
    "cancel",
    "publish",
    "delete_branch",
    "finish",
    "remove_code",
    "move_file.marker",
    "move_file",
)
NOTIFY_STEP_PREFIX = "notify "

# The status code each HTTP error class of the SDK stands for, by its nearest base.
_HTTP_CODES = {
    "BadRequestError": 400,
    "UnauthorizedError": 401,
    "ForbiddenError": 403,
    "NotFoundError": 404,
    "MethodNotAllowedError": 405,
    "ConflictError": 409,
    "TooManyRequestsError": 429,
    "InternalError": 500,
    "BadGatewayError": 502,
    "ServiceUnavailableError": 503,
    "GatewayTimeoutError": 504,
}


def error_names() -> list[str]:
    """Every exception class the SDK defines, by name."""
    return sorted(
        name
        for name, value in vars(bauplan.exceptions).items()
        if isinstance(value, type) and issubclass(value, Exception)
    )


def sdk_error(name: str, message: str) -> Exception:
    """An instance of the SDK's exception class ``name``, as the SDK would raise it."""
    cls = getattr(bauplan.exceptions, name)
    if issubclass(cls, bauplan.exceptions.BauplanHTTPError):
        code = next(_HTTP_CODES[b.__name__] for b in cls.__mro__ if b.__name__ in _HTTP_CODES)
        error: Exception = cls(code, name, message)
        return error
    made: Exception = cls(message)
    return made


def check(method: str, error: str, count: int) -> None:
    """Refuse, in one sentence, a fault that could never fire as meant."""
    if method.startswith(STEP_PREFIX):
        step = method[len(STEP_PREFIX) :]
        if step not in STEPS and not (step.startswith(NOTIFY_STEP_PREFIX) and step.strip()):
            raise RehearsalFaultError(
                f"no run step named {step!r}; steps are {', '.join(STEPS)} and "
                "'notify <kind>:<name> <status>' (as `runs show` lists them)"
            )
        if error != EXIT_AFTER:
            raise RehearsalFaultError(
                f"a step fault can only be {EXIT_AFTER} (kill the worker right after "
                f"{step!r} is checkpointed), not {error!r}"
            )
    elif method not in METHODS:
        raise RehearsalFaultError(
            f"no rehearsed Bauplan method named {method!r}; use one of {', '.join(METHODS)}, "
            f"or step:NAME for a step of the run workflow"
        )
    elif error != EXIT_AFTER and error not in error_names():
        raise RehearsalFaultError(
            f"{error!r} is not an exception of the bauplan SDK; use {EXIT_AFTER} or one of "
            f"{', '.join(error_names())}"
        )
    if count < 1:
        raise RehearsalFaultError(f"--count {count}: a fault must hit at least one call")


_signatures: dict[str, inspect.Signature] = {}
_signatures_lock = threading.Lock()


def signature(method: str) -> inspect.Signature:
    # The SDK's signatures are parsed from text with ast; CPython 3.11.7 can fail
    # that with "AST constructor recursion depth mismatch" when threads race.
    with _signatures_lock:
        if method not in _signatures:
            _signatures[method] = inspect.signature(getattr(bauplan.Client, method))
        return _signatures[method]


def bind(method: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> dict[str, Any]:
    """The call's arguments by name; a TypeError for any call the SDK would refuse."""
    try:
        bound = signature(method).bind(None, *args, **kwargs)
    except TypeError as exc:
        raise TypeError(f"bauplan.Client.{method}() would refuse this call: {exc}") from None
    return dict(bound.arguments)


class _FaultSource(Protocol):
    def take_fault(self, method: str) -> tuple[str, str] | None: ...


class _Client(Protocol):
    @property
    def ledger(self) -> _FaultSource: ...


R = TypeVar("R")


def sdk_method(method: Callable[..., R]) -> Callable[..., R]:
    """One SDK method of the rehearsal client: the SDK's signature, then any armed fault.

    An error fault raises before the call does anything; ``EXIT_AFTER`` lets the
    call do its work (a ``run`` records its job) and kills the process before the
    answer reaches the caller, as a crash at that instant would.
    """
    name = method.__name__

    @wraps(method)
    def call(self: _Client, *args: Any, **kwargs: Any) -> R:
        bind(name, args, kwargs)
        fault = self.ledger.take_fault(name)
        if fault is not None and fault[0] != EXIT_AFTER:
            raise sdk_error(*fault)
        result = method(self, *args, **kwargs)
        if fault is not None:
            os._exit(EXIT_CODE)
        return result

    return call
