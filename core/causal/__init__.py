"""Causal analysis as jobs and records: the kinds of intervention (``kinds``, one table), what to do
(``specs``), doing it against stored checkpoints (``jobs``, torch only inside the worker's child),
and the stored results (``results``, torch-free).
The torch side lives in ``core.ml.interventions``, ``core.ml.patching`` and ``core.ml.probes``."""
