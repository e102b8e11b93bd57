"""``python -m ffc.compiler``: the ffc command line."""

from .cli import main

main()
