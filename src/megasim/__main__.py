"""``python -m megasim`` is the ``megasim`` command."""

from megasim.cli import app

app()
