"""Notifications: Slack, signed webhooks and GitHub commit statuses.

``config`` holds the ``[notifiers.<name>]`` models (imported by the settings, so
it depends on pydantic only); ``notice`` is what a notification says about a
run; ``slack``, ``webhook`` and ``github_status`` turn a notice into one HTTP
request each; ``http`` sends it and classifies the answer; ``delivery`` tries
one notice durably, with retries; ``outbox`` is the queue and workflow that
carry each notice apart from its run.
"""
