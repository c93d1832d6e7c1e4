"""The notebook API's one exception: whatever goes wrong reading a run, said in a sentence.

``NotebookError`` names what was asked for (the run, the step, the metric key, the server's answer),
so a notebook cell's traceback ends in a line a person can act on. The sources translate what their
layer raises (an HTTP status, a corrupt checkpoint, a missing database file) into it.
"""

from __future__ import annotations


class NotebookError(Exception):
    """A run, step, key or source that cannot be read as asked."""
