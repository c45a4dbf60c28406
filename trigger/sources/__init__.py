"""Where events come from: each source turns the outside world into an ``Event``
and hands it to ``trigger.ingest`` with its own matching filter.

``webhooks`` (GitHub, GitLab, signed generic hooks), ``files`` (a watched folder),
``schedule`` (cron on DBOS's scheduler) and ``manual`` (``fire``). Nothing here
registers itself: ``trigger.service`` mounts the routers and runs the components.
"""
