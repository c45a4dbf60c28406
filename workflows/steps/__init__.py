"""The run workflow's steps, beside ``workflows.run``: ``branch`` (the guard on a Bauplan
branch name), ``code`` (the pushed commit, checked out per run), ``submit`` (one Bauplan
job per run, whatever crashes in between) and ``files`` (the dropped file, before the
run and after it)."""
