"""``python -m aflab``: the command line, as ``accelerate launch -m aflab train ...`` runs it."""

from aflab.cli.main import main

main()
