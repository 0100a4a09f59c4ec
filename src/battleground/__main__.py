"""``python -m battleground`` is the ``battleground`` command."""

from battleground.cli import main

main()
