"""The ``mmgeom`` command line: ``train``, ``demo``, ``losses``, ``config``, ``report``, ``study``,
``features``, ``eval``, ``generate``.

User errors (a bad config key, a missing data package, no usable checkpoint, a non-finite loss) print one
message and exit with status 2 (1 for a run that diverged; 130/143 for a run stopped by SIGINT/SIGTERM
after writing its checkpoint); set ``MMGEOM_DEBUG=1`` to see the traceback instead.

``mmgeom train`` also runs under ``torchrun --nproc-per-node N -m mmgeom train CONFIG``: every worker
joins the process group from the torchrun variables and rank 0 alone prints and writes files.

One module per command group, each a thin layer (parse, call the library, print); :mod:`.app` puts them
together.
"""

from .app import app, main

__all__ = ["app", "main"]
