"""bauplan-trigger: something happens, and a Bauplan pipeline runs, durably, once.

The flow reads top to bottom in the tree: a source (``trigger.sources``: webhooks,
a watched folder, a schedule, a manual ``fire``) turns what happened into an
``Event`` (``trigger.core.event``); matching (``trigger.core.matching``) turns the
event into run requests; ``trigger.ingest`` enqueues them on the durable queue
(``workflows.queue``) before anyone hears back; ``workflows.run`` runs each on
Bauplan, and ``workflows.notify`` tells people how it went.

The public surface is small: the ``bauplan-trigger`` command (``trigger.cli:main``),
the composition root ``trigger.service`` (``serve``, ``create_app``) and the settings
(``trigger.core.settings``: ``load_settings``, ``build_settings``, ``Settings``).
``trigger.core`` is the kernel both halves share and imports nothing else of ours;
``trigger.http`` and ``trigger.ops`` (API, page, metrics, explain, control, checks)
serve operators. ``tests/test_layout.py`` keeps the imports running that way.
"""
