"""The ``docvec`` command line (typer + rich): one module per command group.

``_utilities`` holds the root app, the consoles, the shared options and helpers; each module below
registers its commands on that app when imported, in the order ``docvec --help`` lists them.

=============  =========================================================
module         commands
=============  =========================================================
``ingest``     ``ingest``
``search``     ``search``
``ask``        ``ask``
``documents``  ``status``, ``revectorize``, ``replace``, ``retry``, ``reconcile``
``evaluate``   ``eval``
``projects``   ``projects``
``providers``  ``providers``
``serve``      ``migrate``, ``api``, ``worker``, ``beat``, ``flower``
``keys``       ``keys create``, ``keys list``, ``keys revoke``
``index``      ``index create``, ``index list``, ``index activate``, ``index cancel``,
               ``index drop``
=============  =========================================================
"""

from __future__ import annotations

from app.cli._utilities import app

# Importing a command module registers its commands, listed in this order by `docvec --help`.
# isort: off
from app.cli import ingest, search, ask, documents, evaluate  # noqa: F401
from app.cli import projects, providers, serve, keys, index  # noqa: F401
# isort: on

__all__ = ["app", "main"]


def main() -> None:
    """Run the ``docvec`` command line (the script itself starts at :func:`app.entry.main`)."""
    app()
