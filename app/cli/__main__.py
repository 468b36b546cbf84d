"""``python -m app.cli``: the command line, without the ``docvec`` script's set-up of worker
metrics (:mod:`app.entry`)."""

from app.cli import main

main()
