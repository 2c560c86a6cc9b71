"""``python -m spate``: the ``spate`` command, for a child process that must run the
same installation as its parent (``spate bench e2e`` starts its consumer this way)."""

from spate.cli.main import main

main()
