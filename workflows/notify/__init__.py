"""Notifications: Slack, signed webhooks and GitHub commit statuses.

The ``[notifiers.<name>]`` models live with the settings
(``trigger.core.settings.notify``); ``notice`` is what a notification says about a
run; ``slack``, ``webhook`` and ``github_status`` turn a notice into one HTTP
request each; ``http`` sends it and classifies the answer; ``delivery`` tries
one notice durably, with retries; ``outbox`` is the queue and workflow that
carry each notice apart from its run.
"""
