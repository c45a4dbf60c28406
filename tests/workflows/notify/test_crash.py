"""kill -9 in the middle of a delivery: after restart it is delivered, and only once."""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any

import pytest
from standardwebhooks.webhooks import Webhook

from tests.support import base_config, wait_until, write_config
from tests.workflows.notify.conftest import WEBHOOK_SECRET, ci_trigger, notifier_config, notify_env
from tests.workflows.notify.receiver import HANG, Reply
from tests.workflows.notify.test_delivery import push_event
from trigger.core.matching import build_request
from workflows.bauplan.rehearsal import Ledger
from workflows.intake import Enqueuer
from workflows.records import show_run
from workflows.runtime import ledger_path


def free_listen() -> str:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    return f"127.0.0.1:{port}"


@pytest.mark.slow
def test_kill_9_during_delivery_delivers_once_after_restart(
    tmp_path: Path,
    project_dir: Path,
    backend: str | None,
    settings_factory: Any,
    serve_process: Any,
    receiver: Any,
) -> None:
    hook = receiver().answer(Reply(200), HANG)  # "started" is confirmed; "succeeded" hangs
    notifiers = notifier_config(hook=hook.url, on=["started", "succeeded", "failed"], timeout=60)
    overrides: dict[str, Any] = {
        "service": {"state_dir": str(tmp_path / "state"), "listen": free_listen()},
        "triggers": [ci_trigger(project_dir, ["ops"])],
        "notifiers": notifiers,
    }
    config = write_config(
        tmp_path / "bauplan-trigger.toml", base_config(tmp_path, project_dir, **overrides)
    )
    env = notify_env(hook=hook.url)
    if backend:
        env["DBOS_SYSTEM_DATABASE_URL"] = backend
    settings = settings_factory(**overrides)

    serve = serve_process(config, env)
    enqueuer = Enqueuer(settings)
    try:
        request = build_request(push_event(), settings.trigger("ci"), settings)
        run_id = enqueuer.enqueue(request).run_id
        wait_until(lambda: len(hook.received()) == 2, timeout=60, what="the final delivery to hang")
        serve.kill9()
        serve.start()
        run = wait_until(
            lambda: (
                (r := show_run(enqueuer.client, run_id))["notifications"]
                and all(n["status"] == "delivered" for n in r["notifications"])
                and len(r["notifications"]) == 2
                and r
            ),
            timeout=90,
            what=f"the notices of run {run_id} after the restart (log: {serve.log()[-2000:]})",
        )
    finally:
        enqueuer.close()

    received = hook.received()
    docs = [Webhook(WEBHOOK_SECRET).verify(r.body, r.headers) for r in received]
    # The confirmed "started" was not sent again; the cut-short "succeeded" was, once.
    assert [d["type"] for d in docs] == ["run.started", "run.succeeded", "run.succeeded"]
    assert [r.answered for r in received] == [200, None, 200]
    assert received[1].headers["webhook-id"] == received[2].headers["webhook-id"]
    assert run["status"] == "succeeded"
    entry = {(n["name"], n["on"]): n for n in run["notifications"]}[("webhook:ops", "succeeded")]
    assert entry["status"] == "delivered" and entry["code"] == 200
    assert len(Ledger(ledger_path(settings)).jobs()) == 1
