"""The file-drop source: ``watcher`` notices and rescans a folder, ``tracker`` decides
when a file has settled, ``offer`` turns a settled version into an enqueued run,
``folder`` checks the watched dir, and ``component`` runs it all inside ``serve``."""
