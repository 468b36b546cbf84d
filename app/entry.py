"""Entry point of the ``docvec`` script.

``docvec worker`` must point prometheus-client at its multiprocess folder *before* anything imports
prometheus-client (it picks its value store at import time), and the CLI (:mod:`app.cli`) imports
the whole application; so that one step happens here, before the CLI is imported.
"""

from __future__ import annotations

import os
import shutil
import sys


def prepare_worker_metrics() -> None:
    """Give this worker (and its prefork children) a fresh multiprocess metrics folder."""
    from app.config import get_settings

    settings = get_settings()
    if not settings.worker_metrics_port:
        return
    folder = (settings.data_dir / "metrics" / f"worker-{os.getpid()}").resolve()
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(folder)


def main() -> None:
    """Run the ``docvec`` command line."""
    if len(sys.argv) > 1 and sys.argv[1] == "worker" and "prometheus_client" not in sys.modules:
        prepare_worker_metrics()
    from app.cli import main as cli_main

    cli_main()
