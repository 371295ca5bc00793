"""``python -m orchestrator`` is the ``orchestrator`` command."""

from orchestrator.cli.cli import main

main()
