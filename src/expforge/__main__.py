"""``python -m expforge`` runs the CLI."""

from expforge.cli import main

main()
