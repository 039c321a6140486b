"""``python -m lshbench`` runs the command line."""

from lshbench.cli import main

main()
