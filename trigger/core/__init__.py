"""The kernel both halves share; it imports nothing else of ours.

``settings`` (the one settings object), ``event`` (the ``Event`` value type),
``matching`` and ``templates`` (event + config -> run requests), ``errors``,
``secrets`` (the one reader of secret environment variables, and the redactor),
``eventlog`` and ``eventlog_store`` (what arrived and what was decided), and small
pieces both sides need: ``fileversion``, ``gitref``, ``text``, ``outage``,
``logfields`` (the ids a log line carries as fields).
"""
