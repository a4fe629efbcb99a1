"""``python -m fastmf``: the same as the ``fastmf`` command."""

from .cli import console_main

console_main()
