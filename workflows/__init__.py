"""The durable side, on DBOS: the run queue, the run workflow, and notifications.

The flow: ``intake.Enqueuer`` puts one run per request on the run queue, partitioned
by Bauplan branch (``branch_flow`` names the keys and rate windows, ``coalesce``
handles bursts); ``run.run_workflow`` holds the branch, resolves it and prepares the
code; ``job`` passes the rate gate (``ratelimit``), submits the job exactly once and
waits for it, inline or as a child on the capped job queue (its steps in ``steps/``,
Bauplan behind ``bauplan/``); ``notify/`` tells people how it went. ``app`` launches DBOS for
``serve``; ``store``, ``executors``, ``hold`` and ``workers`` keep each submission
single and each executor id to one live process; ``records`` reads runs back.

The public surface: ``intake.Enqueuer``, ``app.launch`` / ``app.shutdown``,
``records.list_runs`` / ``records.show_run`` and ``result.RunResult``. This package
imports only ``trigger.core``; DBOS's private names go through ``dbos_compat``.
"""
