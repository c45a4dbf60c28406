"""File drops: a folder watcher that offers each finished file version once.

``config`` holds the ``[triggers.files]`` model and the pattern matcher (no
I/O), ``identity`` turns a file on disk into an ``Event``, ``tracker`` decides
when a file is ready, ``watcher`` runs one watch loop per trigger inside
``serve``. Importing this package stays cheap: ``settings`` imports ``config``.
"""
