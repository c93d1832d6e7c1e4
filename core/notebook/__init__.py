"""Read circuitboard runs from a notebook: ``from core.notebook import open as cb_open``.

``open(target)`` takes a database URL, an SQLite file or a server URL and returns a client whose
runs carry their spec, summary, metric series, attention snapshots as numpy arrays, checkpoints as
models and intervention results (docs/notebook.md). The client is
:mod:`core.notebook.client`; its sources are :mod:`core.notebook.database` and :mod:`core.notebook.http`.
"""

from core.notebook.client import open
from core.notebook.errors import NotebookError

__all__ = ["NotebookError", "open"]
