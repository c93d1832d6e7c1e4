"""The intervention kinds, one table: what each accepts, how its results are labelled, and what runs it.

``KINDS[kind]`` is read by the spec (``core.causal.specs.InterventionSpec``: the kinds it accepts,
each kind's variants and defaults; the API's schema and the CLI's choices follow from it) and by the
job (``core.causal.jobs``: what to run, on which targets, under which label). Each (step, variant,
target) becomes one stored result, keyed (run, step, intervention, target):

| kind | variants (default: all but ``run``) | intervention label | target label |
| --- | --- | --- | --- |
| ``ablate`` | ``zero``, ``mean``, ``resample`` (the head's output, hook_z) | ``ablate/zero`` | ``L1H3`` |
| ``edge`` | ``renorm``, ``raw`` (remove the role's edge from the pattern) | ``edge/eoi/renorm`` | ``L0H*`` |
| ``pattern`` | ``ideal``, ``shift`` (key + ``shift``), ``run`` (``source_run``'s pattern) | ``pattern/shift-2`` | ``L0H3+L1H3`` |
| ``activation_patch`` | the hook sites ``resid_pre``, ``resid_mid``, ``resid_post``, ``attn_out``, ``mlp_out`` | ``patch/resid_post/accuracy`` | ``len16`` |
| ``probe`` | the targets ``eoi_position``, ``length``, ``t``, ``y_prev``, ``x_t`` (at ``layer``, ``site``) | ``probe/x_t`` | ``blocks.1.hook_resid_mid`` |

A kind *on heads* (ablate, edge, pattern) gives ``hooks``: ``(bench, variant, target) -> hooks_for``
(``core.ml.interventions``), which the job evaluates against the untouched model on the same rows.
Any other kind gives ``measure``: ``(bench, variant, target label) -> the result to store``.
Torch is imported inside the runners only, so the table itself is torch-free.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from core.names import (
    ABLATE,
    ABLATIONS,
    ACTIVATION_PATCH,
    EDGE,
    EDGE_VARIANTS,
    PATCH_SITES,
    PATTERN,
    PATTERN_VARIANTS,
    PROBE,
    PROBE_TARGETS,
    ROLE_SHORT,
    TEST,
    hook_name,
)


class InterventionError(ValueError):
    """The job asks for something the run cannot give (a missing step, a head it lacks)."""


@dataclass
class Bench:
    """What a kind's runner works with at one step of one job (built by ``core.causal.jobs``)."""

    spec: Any  # the job's core.causal.specs.InterventionSpec
    model: Any  # the run's Transformer at this step, in eval mode
    data: Any  # the run's core.problems.Dataset
    max_len: int  # the run's problem.max_len
    loss_on: str  # the run's train.loss_on
    source: Callable[[], Any]  # pattern/run: the source run's model (loaded once per job)

    @property
    def test(self) -> tuple[np.ndarray, np.ndarray]:
        return self.data.split(TEST)


@dataclass(frozen=True)
class Kind:
    """One kind of intervention: its variants, its labels, and either ``hooks`` or ``measure``."""

    name: str
    variants: tuple[str, ...]  # what ``variants`` may name
    defaults: tuple[str, ...]  # what an empty ``variants`` runs
    prefix: str  # the first part of every label: ``ablate``/zero, ``patch``/resid_post/accuracy
    rest: Callable[[Any, str, str | None], str]  # (spec, variant, role or None) -> the label after the prefix
    title: str  # what the dashboard's form says of it
    hooks: Callable[[Bench, str, Any], Any] | None = None  # a kind on heads: (bench, variant, Target) -> hooks_for
    by_role: bool = False  # on heads: a head's role changes what is done (its edge, its ideal map)
    target: Callable[[Any, int], str] | None = None  # any other kind: (spec, max_len) -> its target label
    measure: Callable[[Bench, str, str], dict] | None = None  # (bench, variant, target label) -> the result

    @property
    def on_heads(self) -> bool:
        return self.hooks is not None

    def label(self, spec, variant: str, role: str | None = None) -> str:
        """The stored ``intervention`` column: ``ablate/zero``, ``edge/eoi/renorm``, ``pattern/shift-2`` ...
        (an edge removed from heads of both roles at once is ``edge/circuit/...``: role None)."""
        return f"{self.prefix}/{self.rest(spec, variant, role)}"


# ---------------------------------------------------------------- kinds on heads


def _ablate_hooks(bench: Bench, variant: str, target) -> Any:
    from core.ml import interventions as iv

    return iv.ablate(bench.model, target.pairs, variant, probe_tokens=bench.data.probe_tokens,
                     probe_lengths=bench.data.probe_lengths, seed=bench.spec.seed)


def _edge_hooks(bench: Bench, variant: str, target) -> Any:
    from core.ml import interventions as iv

    return iv.combine(*[iv.zero_edge(bench.model, [(layer, head)], role, renorm=variant == "renorm")
                        for layer, head, role in target.heads])


def _pattern_hooks(bench: Bench, variant: str, target) -> Any:
    from core.ml import interventions as iv

    if variant == "run":
        return iv.patch_from_model(bench.model, bench.source(), target.pairs)
    shift = bench.spec.shift if variant == "shift" else 0
    return iv.patch_ideal(bench.model, list(target.heads), shift=shift)


def _edge_label(spec, variant: str, role: str | None) -> str:
    return f"{ROLE_SHORT[role] if role else 'circuit'}/{variant}"


def _pattern_label(spec, variant: str, role: str | None) -> str:
    if variant == "shift":
        return f"shift{spec.shift:+d}"
    if variant == "run":
        return f"run{spec.source_run}@{'last' if spec.source_step is None else spec.source_step}"
    return "ideal"


def _variant(spec, variant: str, role: str | None) -> str:
    return variant


# ---------------------------------------------------------------- kinds that measure


def _patch_length(spec, max_len: int) -> int:
    return spec.length or max_len


def _activation_patch(bench: Bench, variant: str, target: str) -> dict:
    from core.ml.patching import activation_patching, corrupt_rows

    tokens, lengths = bench.test
    spec, length = bench.spec, _patch_length(bench.spec, bench.max_len)
    clean = tokens[lengths == length][:spec.rows_per_len]
    if len(clean) == 0:
        raise InterventionError(f"length: the test split has no rows of length {length}")
    corrupted = clean[corrupt_rows(np.full(len(clean), length), seed=spec.seed)]
    return activation_patching(bench.model, clean, corrupted, length, site=variant, metric=spec.metric,
                               loss_on=bench.loss_on).as_dict()


def _probe(bench: Bench, variant: str, target: str) -> dict:
    from core.ml.probes import probe

    spec, n_layers = bench.spec, bench.model.cfg.n_layers
    if spec.layer >= n_layers:
        raise InterventionError(f"layer: the model has {n_layers} layers (got {spec.layer})")
    tokens, lengths = bench.test
    keep = np.concatenate([np.flatnonzero(lengths == n)[:spec.rows_per_len] for n in np.unique(lengths)])
    (found,) = probe(bench.model, tokens[keep], lengths[keep], target, [variant], seed=spec.seed)
    return found.as_dict()


# ---------------------------------------------------------------- the table

KINDS: dict[str, Kind] = {kind.name: kind for kind in (
    Kind(ABLATE, ABLATIONS, ABLATIONS, ABLATE, _variant, "ablate: zero / mean / resample a head",
         hooks=_ablate_hooks),
    Kind(EDGE, EDGE_VARIANTS, EDGE_VARIANTS, EDGE, _edge_label, "edge: zero the theory's edge",
         hooks=_edge_hooks, by_role=True),
    Kind(PATTERN, PATTERN_VARIANTS, ("ideal",), PATTERN, _pattern_label, "pattern: ideal, shifted, or another run's map",
         hooks=_pattern_hooks, by_role=True),
    Kind(ACTIVATION_PATCH, PATCH_SITES, ("resid_post",), "patch", lambda spec, variant, role: f"{variant}/{spec.metric}",
         "activation patching (clean -> corrupted)",
         target=lambda spec, max_len: f"len{_patch_length(spec, max_len)}", measure=_activation_patch),
    Kind(PROBE, PROBE_TARGETS, ("eoi_position", "t", "y_prev", "x_t"), PROBE, _variant, "linear probe",
         target=lambda spec, max_len: hook_name(spec.layer, spec.site), measure=_probe),
)}
HEAD_PREFIXES = tuple(kind.prefix for kind in KINDS.values() if kind.on_heads)  # labels of evaluations
