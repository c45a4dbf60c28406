"""Steps that call Bauplan: retried by DBOS on what the SDK says is transient."""

from __future__ import annotations

from typing import Any

from dbos import StepOptions

from trigger.core.errors import BauplanFailure
from workflows import crashpoint, runtime
from workflows.bauplan.adapter import is_retryable
from workflows.dbos_compat import DBOSMaxStepRetriesExceeded


def retrying(name: str) -> StepOptions:
    cfg = runtime.current().settings.bauplan
    return {
        "name": name,
        "retries_allowed": True,
        "max_attempts": cfg.retry_attempts,
        "interval_seconds": cfg.retry_interval,
        "backoff_rate": 2.0,
        "should_retry": is_retryable,
    }


def step(name: str, fn: Any, *args: Any) -> Any:
    """Run ``fn`` as a retrying DBOS step; a give-up surfaces the last SDK message."""
    try:
        return crashpoint.step(retrying(name), fn, *args)
    except DBOSMaxStepRetriesExceeded as exc:
        last = exc.errors[-1] if exc.errors else exc
        raise BauplanFailure(
            f"gave up after {exc.max_retries} attempts: {last}", retryable=False
        ) from None
