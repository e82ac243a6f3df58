"""``python -m expforge.cli`` runs the CLI (as ``python -m expforge`` and the ``expforge`` script do)."""

from expforge.cli import main

main()
