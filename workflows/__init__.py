"""The durable side, on DBOS: the run queue, the run workflow, and notifications.

The flow: ``queue.Enqueuer`` puts one run per request on the run queue, partitioned
by Bauplan branch (``flow_queues`` and ``coalesce`` for per-trigger limits and
bursts); ``run.run_workflow`` resolves the branch, prepares the code, submits the
job exactly once and waits for it (its steps in ``steps/``, Bauplan behind
``bauplan/``); ``notify/`` tells people how it went. ``app`` launches DBOS for
``serve``; ``store``, ``executors``, ``hold`` and ``workers`` keep each submission
single and each executor id to one live process; ``records`` reads runs back.

The public surface: ``queue.Enqueuer``, ``app.launch`` / ``app.shutdown``,
``records.list_runs`` / ``records.show_run`` and ``result.RunResult``. This package
imports only ``trigger.core``; DBOS's private names go through ``dbos_compat``.
"""
