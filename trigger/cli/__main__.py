"""``python -m trigger.cli``: the ``bauplan-trigger`` command."""

from trigger.cli import main

main(prog_name="bauplan-trigger")
