"""Webhook sources: ``github``, ``gitlab``, signed ``generic`` hooks and ``cloudevents``,
each a router.

Every handler follows one skeleton (``hook``): read the body under a cap, verify the
signature, parse, hand over to ``trigger.ingest``. ``push`` normalises a git push into
event attributes and ``filters`` decides which pushes a trigger cares about."""
